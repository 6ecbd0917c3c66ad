/*
 * history.c - the history store's rings, sampling and queries (the
 * contract is history.h; the file is history_file.c).
 *
 * Shape:
 *   - Every series with history owns one block (struct km_hist,
 *     history_int.h): per tier a ring of fixed-size tsz chunks, allocated
 *     when the series is first sampled and never grown. A full chunk moves
 *     the ring on; a full ring reuses its oldest chunk.
 *   - The sample timer fires at multiples of tier 0's step (the delay is
 *     computed from the wall clock each time, so it never drifts); each
 *     tick runs the registry's collectors, appends every live series'
 *     value to tier 0 and folds it into each coarse tier's open bucket,
 *     which is appended when a sample falls past the bucket's end.
 *   - The same walk drops stale series whose last point is older than the
 *     longest retention, a few per tick.
 *   - Queries binary-search the ring for the first chunk that reaches
 *     `from` and decode forward, bucketing as they go.
 *
 * Ownership: s->hist is a struct km_hist of ours, freed by the registry's
 * drop hook (km_series_on_drop) or by km_history_free.
 */
#include "config.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <katomon/util.h>

#include "history_int.h"
#include "log.h"

#define KM_HIST_DROPS_PER_TICK 16 /* stale series dropped per sample, at most */
#define KM_HIST_STEP_MIN_MS    10 /* finest tier-0 step accepted */

/* ---- clocks and small helpers --------------------------------------------------- */

double km_hist_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double km_hist_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Seconds to milliseconds, clamped so the cast is defined. */
static int64_t km_hist_ms(double secs)
{
    double ms = secs * 1000.0;
    if (!(ms > -4e15))
        return (int64_t)-4e15;
    if (ms > 4e15)
        return (int64_t)4e15;
    return (int64_t)llround(ms);
}

/* floor(a / b) * b for b > 0 (negative a rounds down too). */
static int64_t km_hist_align(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if (a % b != 0 && a < 0)
        q--;
    return q * b;
}

/* ---- geometry ------------------------------------------------------------------- */

/* Checks opts and fills h's tiers and their shapes. 0, or -1 with err. */
static int km_hist_geometry(struct km_history *h, const struct km_history_opts *o,
                            char *err, size_t errlen)
{
    if (o->ntiers < 1 || o->ntiers > KM_HISTORY_TIERS_MAX) {
        snprintf(err, errlen, "history: %u tiers (1 to %d)", o->ntiers,
                 KM_HISTORY_TIERS_MAX);
        return -1;
    }
    size_t off = 0;
    size_t slot = (km_tsz_size(KM_HIST_CHUNK_CAP) + 7) & ~(size_t)7;
    for (unsigned i = 0; i < o->ntiers; i++) {
        const struct km_history_tier *t = &o->tier[i];
        struct km_hist_geom *g = &h->geom[i];
        int64_t step = km_hist_ms(t->step), ret = km_hist_ms(t->retention);
        if (!isfinite(t->step) || !isfinite(t->retention) || step < KM_HIST_STEP_MIN_MS ||
            ret < step) {
            snprintf(err, errlen,
                     "history: tier %u: step %g s, retention %g s "
                     "(step >= 0.01 s, retention >= step)",
                     i, t->step, t->retention);
            return -1;
        }
        if (i > 0 && (step <= h->geom[i - 1].step_ms || step % h->geom[0].step_ms != 0)) {
            snprintf(err, errlen,
                     "history: tier %u: step %g s is not a multiple of "
                     "tier 0's, coarser than tier %u's",
                     i, t->step, i - 1);
            return -1;
        }
        double per = (double)(i == 0 ? KM_HIST_BUDGET_RAW : KM_HIST_BUDGET_AGG);
        double chunks = ceil((double)ret / (double)step * per / KM_HIST_CHUNK_CAP) + 1;
        if (chunks * (double)slot > KM_HIST_SERIES_MAX_BYTES) {
            snprintf(err, errlen,
                     "history: tier %u: retention %g s at %g s needs "
                     "%.0f bytes per series (at most %u)",
                     i, t->retention, t->step, chunks * (double)slot,
                     KM_HIST_SERIES_MAX_BYTES);
            return -1;
        }
        g->step_ms = step;
        g->ncols = i == 0 ? 1 : KM_HIST_AGG_COLS;
        g->cap = KM_HIST_CHUNK_CAP;
        g->nchunks = (unsigned)chunks;
        g->chunk_size = slot;
        g->offset = off;
        off += g->nchunks * slot;
        h->tier[i] = *t;
        if (ret > h->keep_ms)
            h->keep_ms = ret;
    }
    if (off > KM_HIST_SERIES_MAX_BYTES) {
        snprintf(err, errlen,
                 "history: %zu bytes per series (at most %u): shorten "
                 "the retentions",
                 off, KM_HIST_SERIES_MAX_BYTES);
        return -1;
    }
    h->ntiers = o->ntiers;
    h->series_bytes = sizeof(struct km_hist) + off;
    return 0;
}

/* ---- blocks and rings ----------------------------------------------------------- */

struct km_tsz *km_hist_chunk(const struct km_history *h, const struct km_hist *hs,
                             unsigned i, unsigned slot)
{
    const struct km_hist_geom *g = &h->geom[i];
    return (struct km_tsz *)(hs->data + g->offset + (size_t)slot * g->chunk_size);
}

struct km_hist *km_hist_new(struct km_history *h)
{
    struct km_hist *hs = malloc(h->series_bytes);
    if (!hs) {
        h->alloc_failed++;
        return NULL;
    }
    memset(hs, 0, sizeof *hs); /* the slots are set up as the rings reach them */
    h->nseries++;
    return hs;
}

/* Takes a chunk's figures out of the store's totals (it is about to go). */
static void km_hist_forget(struct km_history *h, unsigned i, const struct km_tsz *c)
{
    if (i == 0)
        h->samples -= km_tsz_count(c);
    h->bytes_used -= km_tsz_used(c);
}

static void km_hist_free_block(struct km_history *h, struct km_hist *hs)
{
    for (unsigned i = 0; i < h->ntiers; i++) {
        unsigned n = h->geom[i].nchunks;
        for (unsigned k = 0; k < hs->ring[i].used; k++)
            km_hist_forget(h, i, km_hist_chunk(h, hs, i, (hs->ring[i].head + n - k) % n));
    }
    h->nseries--;
    free(hs);
}

/* Moves tier i's ring on to a fresh empty chunk (reusing the oldest when
   the ring is full) and returns it. */
static struct km_tsz *km_hist_advance(struct km_history *h, struct km_hist *hs,
                                      unsigned i)
{
    const struct km_hist_geom *g = &h->geom[i];
    struct km_hist_ring *r = &hs->ring[i];
    unsigned next = r->used == 0 ? 0 : (r->head + 1) % g->nchunks;
    struct km_tsz *c = km_hist_chunk(h, hs, i, next);
    if (r->used == g->nchunks)
        km_hist_forget(h, i, c);
    else
        r->used++;
    r->head = next;
    km_tsz_init(c, g->cap, g->ncols);
    return c;
}

/* Appends one sample to tier i: 0, or -1 (counted) when it cannot. */
static int km_hist_append(struct km_history *h, struct km_hist *hs, unsigned i, int64_t t,
                          const double *v)
{
    struct km_hist_ring *r = &hs->ring[i];
    struct km_tsz *c =
        r->used ? km_hist_chunk(h, hs, i, r->head) : km_hist_advance(h, hs, i);
    size_t before = km_tsz_used(c);
    int rc = km_tsz_append(c, t, v);
    if (rc == KM_TSZ_FULL) {
        c = km_hist_advance(h, hs, i);
        before = 0;
        rc = km_tsz_append(c, t, v);
    }
    if (rc != KM_TSZ_OK) {
        h->samples_skipped++;
        return -1;
    }
    h->bytes_used += km_tsz_used(c) - before;
    if (i == 0)
        h->samples++;
    return 0;
}

int km_hist_push_chunk(struct km_history *h, struct km_hist *hs, unsigned i,
                       unsigned count, const uint8_t *buf, size_t len)
{
    const struct km_hist_geom *g = &h->geom[i];
    struct km_tsz *c = km_hist_advance(h, hs, i);
    int rc = km_tsz_load(c, g->cap, g->ncols, count, buf, len);
    if (rc != KM_TSZ_OK) {
        /* an empty chunk at the head: take it back out of the ring */
        struct km_hist_ring *r = &hs->ring[i];
        r->head = (r->head + g->nchunks - 1) % g->nchunks;
        r->used--;
        return rc;
    }
    if (i == 0)
        h->samples += km_tsz_count(c);
    h->bytes_used += km_tsz_used(c);
    return KM_TSZ_OK;
}

/* ---- sampling ------------------------------------------------------------------- */

/* Folds value v at time t into coarse tier i's open bucket, appending the
   bucket before when t falls past its end. */
static void km_hist_fold(struct km_history *h, struct km_hist *hs, unsigned i, int64_t t,
                         double v)
{
    struct km_hist_acc *a = &hs->acc[i];
    int64_t start = km_hist_align(t, h->geom[i].step_ms);
    if (a->count > 0 && start != a->start_ms) {
        double row[KM_HIST_AGG_COLS] = {a->min, a->max, a->sum, (double)a->count};
        km_hist_append(h, hs, i, a->start_ms, row);
        a->count = 0;
    }
    if (isnan(v))
        return; /* a gap: nothing to aggregate */
    if (a->count == 0) {
        a->start_ms = start;
        a->min = a->max = v;
        a->sum = 0;
    }
    if (v < a->min)
        a->min = v;
    if (v > a->max)
        a->max = v;
    a->sum += v;
    a->count++;
}

/* One tier-0 sample of series s at t. */
static void km_hist_sample_one(struct km_history *h, struct km_series *s, int64_t t)
{
    struct km_hist *hs = s->hist;
    if (!hs) {
        hs = s->hist = km_hist_new(h);
        if (!hs)
            return;
    }
    if (t <= hs->last_ms) {
        h->samples_skipped++; /* the clock went back: keep the order */
        return;
    }
    double v = s->value;
    km_hist_append(h, hs, 0, t, &v);
    hs->last_ms = t;
    for (unsigned i = 1; i < h->ntiers; i++)
        km_hist_fold(h, hs, i, t, v);
}

/* The time of s's newest point in ms (any tier, or its latest value); 0 none. */
static int64_t km_hist_last_ms(const struct km_history *h, const struct km_series *s)
{
    double last = km_history_last(h, s);
    if (last > 0)
        return km_hist_ms(last);
    return s->time_us / 1000;
}

void km_history_sample(struct km_history *h, double when)
{
    int64_t t = km_hist_ms(when);
    unsigned drops = 0;
    km_series_collect(h->reg);
    struct km_family *f = km_series_families(h->reg), *fnext;
    for (; f; f = fnext) {
        fnext = f->next; /* a drop may free f along with its last series */
        struct km_series *s = f->first, *snext;
        for (; s; s = snext) {
            snext = s->next;
            if (s->live) {
                km_hist_sample_one(h, s, t);
                continue;
            }
            int64_t last = km_hist_last_ms(h, s);
            if (drops < KM_HIST_DROPS_PER_TICK && last != 0 && last < t - h->keep_ms) {
                drops++;
                h->dropped++;
                km_series_drop(h->reg, s);
            }
        }
    }
}

/* The registry's drop hook. */
static void km_hist_on_drop(struct km_series *s, void *arg)
{
    if (s->hist)
        km_hist_free_block(arg, s->hist);
    s->hist = NULL;
}

/* ---- timers --------------------------------------------------------------------- */

/* Sets the sample timer for the first tier-0 boundary after `after` ms. */
static void km_hist_schedule(struct km_history *h, int64_t after)
{
    int64_t step = h->geom[0].step_ms;
    h->next_ms = km_hist_align(after, step) + step;
    double delay = (double)h->next_ms / 1000.0 - km_hist_now();
    struct timeval tv = km_timeval(delay > 0 ? delay : 0);
    evtimer_add(h->sample_ev, &tv);
}

static void km_hist_sample_cb(evutil_socket_t fd, short what, void *arg)
{
    struct km_history *h = arg;
    int64_t now = km_hist_ms(km_hist_now());
    int64_t t = h->next_ms;
    /* woken within half a step of the boundary: that boundary; a stalled
       loop or a clock jump: the latest boundary passed */
    if (llabs(now - t) > h->geom[0].step_ms / 2)
        t = km_hist_align(now, h->geom[0].step_ms);
    km_history_sample(h, (double)t / 1000.0);
    km_hist_schedule(h, t > now ? t : now);
}

static void km_hist_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    km_hist_flush_async(arg);
}

static void km_hist_child_cb(evutil_socket_t fd, short what, void *arg)
{
    km_hist_reap(arg, 0);
}

/* ---- the store ------------------------------------------------------------------ */

static int km_hist_timers(struct km_history *h)
{
    h->sample_ev = evtimer_new(h->base, km_hist_sample_cb, h);
    if (!h->sample_ev)
        return -1;
    km_hist_schedule(h, km_hist_ms(km_hist_now()));
    if (!h->path || h->flush_interval <= 0)
        return 0;
    h->flush_ev = event_new(h->base, -1, EV_PERSIST, km_hist_flush_cb, h);
    h->child_ev = event_new(h->base, -1, EV_PERSIST, km_hist_child_cb, h);
    if (!h->flush_ev || !h->child_ev)
        return -1;
    struct timeval tv = km_timeval(h->flush_interval);
    return event_add(h->flush_ev, &tv);
}

/* The file's directory (state_dir by default) may not exist yet: nothing
   else makes it when no plugin keeps state (alert_manager makes state_dir),
   and then every write failed and a restart started empty. One level, as
   alert_manager does. */
static void km_hist_make_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    const char *dir = dirname(copy);
    if (mkdir(dir, 0750) < 0 && errno != EEXIST)
        km_log(KM_LOG_ERROR,
               "history: cannot create %s: %s; the history file cannot be written", dir,
               strerror(errno));
    free(copy);
}

struct km_history *km_history_new(struct event_base *base, struct km_series_reg *reg,
                                  const struct km_history_opts *opts, char *err,
                                  size_t errlen)
{
    struct km_history *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "history: out of memory");
        return NULL;
    }
    h->base = base;
    h->reg = reg;
    h->child_fd = -1;
    h->flush_interval = opts->flush_interval > 0 ? opts->flush_interval : 0;
    if (km_hist_geometry(h, opts, err, errlen) < 0) {
        free(h);
        return NULL;
    }
    if (opts->path && opts->path[0] && !(h->path = strdup(opts->path))) {
        snprintf(err, errlen, "history: out of memory");
        free(h);
        return NULL;
    }
    km_series_on_drop(reg, km_hist_on_drop, h);
    if (h->path)
        km_hist_load(h);
    if (h->path && base) /* the daemon: it will write */
        km_hist_make_dir(h->path);
    if (base && km_hist_timers(h) < 0) {
        snprintf(err, errlen, "history: cannot make its timers");
        free(h->path); /* nothing to write: it just started */
        h->path = NULL;
        km_history_free(h);
        return NULL;
    }
    return h;
}

/* Frees every series' block (the store is going; the series stay). */
static void km_hist_free_all(struct km_history *h)
{
    for (struct km_family *f = km_series_families(h->reg); f; f = f->next)
        for (struct km_series *s = f->first; s; s = s->next)
            km_hist_on_drop(s, h);
}

void km_history_free(struct km_history *h)
{
    if (!h)
        return;
    if (h->sample_ev)
        event_free(h->sample_ev);
    if (h->flush_ev)
        event_free(h->flush_ev);
    if (h->child_ev)
        event_free(h->child_ev);
    h->child_ev = NULL;
    if (h->path)
        km_history_flush(h);
    km_hist_free_all(h);
    km_series_on_drop(h->reg, NULL, NULL);
    free(h->path);
    free(h);
}

int km_history_flush(struct km_history *h)
{
    char err[512];
    if (!h->path)
        return 0;
    km_hist_reap(h, 1); /* its rename must not land after ours */
    double t0 = km_hist_mono();
    if (km_hist_write(h, err, sizeof err) < 0) {
        h->flush_errors++;
        km_log(KM_LOG_ERROR, "history: not written: %s", err);
        return -1;
    }
    h->flushes++;
    h->last_flush_secs = km_hist_mono() - t0;
    return 0;
}

unsigned km_history_ntiers(const struct km_history *h)
{
    return h->ntiers;
}

const struct km_history_tier *km_history_tier(const struct km_history *h, unsigned i)
{
    return i < h->ntiers ? &h->tier[i] : NULL;
}

unsigned km_history_pick(const struct km_history *h, double from, double now)
{
    for (unsigned i = 0; i < h->ntiers; i++)
        if (now - h->tier[i].retention <= from)
            return i;
    return h->ntiers - 1;
}

void km_history_get_stats(const struct km_history *h, struct km_history_stats *out)
{
    memset(out, 0, sizeof *out);
    out->series = h->nseries;
    out->samples = h->samples;
    out->bytes_reserved = h->nseries * h->series_bytes;
    out->bytes_used = h->bytes_used;
    out->flushes = h->flushes;
    out->flush_errors = h->flush_errors;
    out->last_flush_secs = h->last_flush_secs;
    out->loaded_series = h->loaded;
    out->bytes_per_series = h->series_bytes;
    out->tier0_bytes_per_series = h->geom[0].nchunks * h->geom[0].chunk_size;
    out->alloc_failed = h->alloc_failed;
    out->samples_skipped = h->samples_skipped;
    out->dropped = h->dropped;
    out->flush_skipped = h->flush_skipped;
    out->load_skipped = h->load_skipped;
}

/* ---- queries -------------------------------------------------------------------- */

/* The chunk k places after the oldest of tier i's ring. */
static const struct km_tsz *km_hist_nth(const struct km_history *h,
                                        const struct km_hist *hs, unsigned i, unsigned k)
{
    unsigned n = h->geom[i].nchunks;
    const struct km_hist_ring *r = &hs->ring[i];
    return km_hist_chunk(h, hs, i, (r->head + n + 1 - r->used + k) % n);
}

/* A bucket being filled by a query. */
struct km_hist_bucket {
    int64_t start;   /* its start, ms; INT64_MIN: none open */
    double min, max; /* extremes */
    double sum;      /* sum of values */
    double count;    /* values summed */
};

/* The output of a query. */
struct km_hist_out {
    struct km_history_point *p; /* where points go */
    size_t n;                   /* written */
    size_t max;                 /* room */
};

static void km_hist_emit(struct km_hist_out *o, struct km_hist_bucket *b)
{
    if (b->start != INT64_MIN && b->count > 0 && o->n < o->max) {
        struct km_history_point *p = &o->p[o->n++];
        p->t = (double)b->start / 1000.0;
        p->v = b->sum / b->count;
        p->min = b->min;
        p->max = b->max;
    }
    b->start = INT64_MIN;
}

/* Adds a row (tier 0: v; coarse: min, max, sum, count) at t to the buckets. */
static void km_hist_add(struct km_hist_out *o, struct km_hist_bucket *b, int64_t step,
                        int64_t t, const double *v, unsigned ncols)
{
    double min = v[0], max = ncols > 1 ? v[1] : v[0];
    double sum = ncols > 1 ? v[2] : v[0], count = ncols > 1 ? v[3] : 1;
    if (isnan(sum) || !(count > 0))
        return;
    int64_t start = km_hist_align(t, step);
    if (start != b->start) {
        km_hist_emit(o, b);
        b->start = start;
        b->min = min;
        b->max = max;
        b->sum = b->count = 0;
    }
    b->min = min < b->min ? min : b->min;
    b->max = max > b->max ? max : b->max;
    b->sum += sum;
    b->count += count;
}

/* First ring position whose chunk ends at or after t (binary search). */
static unsigned km_hist_seek(const struct km_history *h, const struct km_hist *hs,
                             unsigned i, int64_t t)
{
    unsigned lo = 0, hi = hs->ring[i].used;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (km_tsz_last(km_hist_nth(h, hs, i, mid)) < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

long km_history_query(const struct km_history *h, const struct km_series *s,
                      unsigned tier, double from, double to, double step,
                      struct km_history_point *out, size_t max)
{
    const struct km_hist *hs = s->hist;
    if (!hs || tier >= h->ntiers)
        return -1;
    const struct km_hist_geom *g = &h->geom[tier];
    int64_t from_ms = km_hist_ms(from), to_ms = km_hist_ms(to);
    int64_t step_ms = isfinite(step) ? km_hist_ms(step) : 0;
    if (step_ms < g->step_ms)
        step_ms = g->step_ms;
    int raw = tier == 0 && step_ms == g->step_ms;
    struct km_hist_out o = {out, 0, max};
    struct km_hist_bucket b = {.start = INT64_MIN};
    double v[KM_TSZ_COLS_MAX];
    int64_t t;
    for (unsigned k = km_hist_seek(h, hs, tier, from_ms); k < hs->ring[tier].used; k++) {
        const struct km_tsz *c = km_hist_nth(h, hs, tier, k);
        if (km_tsz_count(c) == 0 || km_tsz_first(c) > to_ms)
            break;
        struct km_tsz_iter it;
        km_tsz_iter_init(&it, c);
        while (o.n < max && km_tsz_next(&it, &t, v) == 1 && t <= to_ms) {
            if (t < from_ms)
                continue;
            if (raw && o.n < max)
                out[o.n++] =
                    (struct km_history_point){(double)t / 1000.0, v[0], v[0], v[0]};
            else if (!raw)
                km_hist_add(&o, &b, step_ms, t, v, g->ncols);
        }
    }
    const struct km_hist_acc *a = &hs->acc[tier];
    if (tier > 0 && a->count > 0 && a->start_ms >= from_ms && a->start_ms <= to_ms) {
        double row[KM_HIST_AGG_COLS] = {a->min, a->max, a->sum, (double)a->count};
        km_hist_add(&o, &b, step_ms, a->start_ms, row, KM_HIST_AGG_COLS);
    }
    km_hist_emit(&o, &b);
    return (long)o.n;
}

double km_history_first(const struct km_history *h, const struct km_series *s)
{
    const struct km_hist *hs = s->hist;
    int64_t first = 0;
    for (unsigned i = 0; hs && i < h->ntiers; i++) {
        int64_t t = hs->ring[i].used ? km_tsz_first(km_hist_nth(h, hs, i, 0)) : 0;
        if (t == 0 && hs->acc[i].count > 0)
            t = hs->acc[i].start_ms;
        if (t != 0 && (first == 0 || t < first))
            first = t;
    }
    return (double)first / 1000.0;
}

double km_history_last(const struct km_history *h, const struct km_series *s)
{
    const struct km_hist *hs = s->hist;
    int64_t last = 0;
    for (unsigned i = 0; hs && i < h->ntiers; i++) {
        int64_t t =
            hs->ring[i].used ? km_tsz_last(km_hist_chunk(h, hs, i, hs->ring[i].head)) : 0;
        if (hs->acc[i].count > 0 && hs->acc[i].start_ms > t)
            t = hs->acc[i].start_ms;
        if (t > last)
            last = t;
    }
    return (double)last / 1000.0;
}
