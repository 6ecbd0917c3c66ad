/*
 * history.h - the history store: a fixed-memory ring per series, in tiers
 * (DESIGN section 9; issue 14).
 *
 * Tier 0 samples every live series of the registry (series.h) every
 * tier-0 step, at times aligned to the step (t = k * step), after running
 * the registry's collectors. Each coarser tier aggregates tier 0's samples
 * into buckets of its own step, aligned likewise, keeping min, max, sum and
 * count per bucket (so avg = sum / count). Every tier of every series is a
 * ring of Gorilla-compressed chunks (tsz.h) of a fixed byte budget: memory
 * per series is fixed when the series is created, and the oldest chunk is
 * overwritten when the ring is full. See README, "History", for the
 * figures.
 *
 * Memory per series (history_int.h has the constants): one block of
 *     sizeof(struct km_hist) + sum over tiers i of n_i * slot
 *     n_i  = ceil(retention_i / step_i * B_i / 1024) + 1 chunks
 *     slot = km_tsz_size(1024) rounded up to 8 bytes (1144 today: the
 *            chunk's 120-byte header and its 1024 data bytes)
 * where B_i is the bytes budgeted per sample: 3 for tier 0 (one value), 8
 * for coarser tiers (min, max, sum, count). The one chunk more than the
 * budget keeps a full retention when the oldest chunk is reused. The
 * budget is what retention is sized for: data that compresses better is
 * kept longer, worse (random doubles) shorter; memory never changes. The
 * block (208 bytes of ring state and open buckets + the chunks) is
 * allocated at a series' first sample and freed when the series is
 * dropped; a failed allocation is counted (alloc_failed) and the series
 * goes without history. With the default tiers "1s:1h 1m:1d 10m:7d":
 * n = 12 + 13 + 9 chunks, 39,104 bytes per series (km_history_get_stats:
 * bytes_per_series), 4096 series 160 MB; tier 0 reserves 13,728 bytes for
 * its hour, 3.81 bytes per sample at the budget, and holds about 1.85 h
 * of a CPU-like series (2.06 bytes reserved per stored sample;
 * check_history prints the figure).
 *
 * Stale series (series.h) whose newest point is older than the longest
 * retention are dropped from the registry while sampling, 16 per sample.
 *
 * Persistence: every flush_interval the store is written to `path` by a
 * forked child (write, fsync, rename, fsync of the directory: the file is
 * the old one or the new one, never a torn one), so the loop never waits
 * on the disk; the final flush at exit is written in-process. On start the
 * file is read back, every record checked (CRC32, chunk decode); a file
 * that does not check is logged, renamed to PATH.corrupt-TIME and set
 * aside, and the store starts empty (never fatal). A kill -9 loses at most
 * the samples since the last flush. A tier of the file whose step is no
 * longer configured is dropped (one warning); a changed retention keeps
 * the newest chunks that fit. Series read back are created in the
 * registry stale, until their topic publishes them again; past max_series
 * they are skipped and counted (load_skipped). The format is described in
 * history_file.c.
 *
 * Ownership: the store owns every series' s->hist; a series dropped from
 * the registry frees it through the registry's drop hook.
 */
#ifndef KM_HISTORY_H
#define KM_HISTORY_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>

#include "series.h"

#define KM_HISTORY_TIERS_MAX 4

/* One tier: step and retention in seconds (retention a multiple of step). */
struct km_history_tier {
    double step;      /* seconds between points (tier 0: between samples) */
    double retention; /* seconds kept */
};

/* What the store is built with ([history] in katomon.conf). */
struct km_history_opts {
    unsigned ntiers;                                   /* 1..KM_HISTORY_TIERS_MAX */
    struct km_history_tier tier[KM_HISTORY_TIERS_MAX]; /* finest first; each step a
                                                          multiple of tier 0's */
    double flush_interval; /* seconds; 0: only by km_history_free/flush */
    const char *path;      /* file; NULL: memory only */
};

/* One point of a range answer. Raw tier-0 points have min == max == v. */
struct km_history_point {
    double t;   /* unix seconds */
    double v;   /* value (downsampled: the average) */
    double min; /* lowest in the bucket */
    double max; /* highest in the bucket */
};

/* Figures for GET /api/v1/history/series, /metrics and the bench. */
struct km_history_stats {
    size_t series;                 /* series with history */
    uint64_t samples;              /* tier-0 samples held, all series */
    size_t bytes_reserved;         /* memory reserved for chunks, all tiers */
    size_t bytes_used;             /* of it holding data */
    uint64_t flushes;              /* files written */
    uint64_t flush_errors;         /* writes that failed (logged) */
    double last_flush_secs;        /* how long the last write took */
    uint64_t loaded_series;        /* read back from the file at start */
    size_t bytes_per_series;       /* one series' block (the formula above) */
    size_t tier0_bytes_per_series; /* of it tier 0's chunks */
    uint64_t alloc_failed;         /* series not given history: ENOMEM */
    uint64_t samples_skipped;      /* samples not stored: time not after the last */
    uint64_t dropped;              /* stale series dropped (aged out) */
    uint64_t flush_skipped;        /* flushes skipped: the last writer still ran */
    uint64_t load_skipped;         /* series in the file not loaded (max_series,
                                      bad name, duplicate) */
};

struct km_history;

/*
 * New store over `reg` on `base` (NULL: no timers, for tests): loads
 * opts->path when it exists, then starts the sample timer (and the flush
 * timer). NULL with a reason in err
 * on bad opts or ENOMEM; a bad file is not an error (see above).
 */
struct km_history *km_history_new(struct event_base *base, struct km_series_reg *reg,
                                  const struct km_history_opts *opts, char *err,
                                  size_t errlen);
/* Stops the timers, writes the file one last time (in-process, when a path
   is set) and frees everything. NULL is fine. */
void km_history_free(struct km_history *h);
/* Writes the file now, in-process. 0, or -1 (logged). */
int km_history_flush(struct km_history *h);
/* Takes one tier-0 sample now, at time t (unix seconds; aligned by the
   caller). For tests and the bench; the timer does it otherwise. */
void km_history_sample(struct km_history *h, double t);

/* The tiers it runs with. */
unsigned km_history_ntiers(const struct km_history *h);
const struct km_history_tier *km_history_tier(const struct km_history *h, unsigned i);

/*
 * The finest tier that still holds `from` (now - retention <= from), or the
 * coarsest. A query on it is downsampled when step > that tier's step.
 */
unsigned km_history_pick(const struct km_history *h, double from, double now);

/*
 * Points of series s on `tier` in [from, to], one per bucket of `step`
 * seconds (step >= the tier's step; buckets aligned to multiples of step;
 * a bucket's t is its start; empty buckets are left out). Writes at most
 * `max` points to out. Returns how many, or -1 when s has no history.
 */
long km_history_query(const struct km_history *h, const struct km_series *s,
                      unsigned tier, double from, double to, double step,
                      struct km_history_point *out, size_t max);
/* Time of the first and of the last point of s in any tier (unix seconds);
   0 when none. */
double km_history_first(const struct km_history *h, const struct km_series *s);
double km_history_last(const struct km_history *h, const struct km_series *s);

void km_history_get_stats(const struct km_history *h, struct km_history_stats *out);

#endif /* KM_HISTORY_H */
