/*
 * history_file.c - the history store's file: writing it (in a forked
 * child, or in-process at exit), reading it back at start (the contract
 * is history.h; the rings are history.c's).
 *
 * Format, version 1, every integer little-endian, doubles as their IEEE
 * 754 bits:
 *
 *   header   "KMHIST\0\1", u32 version, u32 ntiers,
 *            per tier: f64 step, f64 retention (s), u32 ncols, u32 cap,
 *            u32 nchunks (the writer's ring shape)
 *   record   u32 len, body[len], u32 crc32(body)      one per series
 *     body   u16 n, name[n]; u16 n, labels[n]; u16 n, help[n]; u8 type;
 *            i64 last sample (ms); per tier: u32 chunks, per chunk (oldest
 *            first) u16 count, u16 n, bytes[n]; u8 open bucket 0/1, when 1:
 *            i64 start (ms), f64 min, f64 max, f64 sum, u64 count
 *   trailer  u32 0xffffffff, u64 records, u32 crc32(every byte before it)
 *
 * Reading checks everything before it changes anything: the whole file is
 * parsed once to check it (every CRC, every bound, every chunk decoded,
 * chunks in time order), then once more to load it. Any failure: one log
 * line saying what and at which byte, the file renamed to
 * PATH.corrupt-<unix time>, the store left empty.
 *
 * Writing: PATH.tmp, fsync, rename over PATH, fsync of the directory. The
 * flush timer forks a child to do it (it writes its copy-on-write view of
 * the store; the loop never waits on the disk), one at a time; the parent
 * polls it with waitpid(WNOHANG) and logs the reason the child sends back
 * through a pipe when it fails. The child dies with its parent, so a kill -9
 * leaves PATH as the last completed write and no writer behind.
 */
#define _GNU_SOURCE /* pipe2 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <katomon/util.h>

#include "history_int.h"
#include "log.h"

#define KM_HIST_MAGIC      "KMHIST\0\1"
#define KM_HIST_MAGIC_LEN  8
#define KM_HIST_VERSION    1
#define KM_HIST_TRAILER    0xffffffffu
#define KM_HIST_HELP_MAX   1024       /* HELP text kept in the file, bytes */
#define KM_HIST_FILE_MAX   (1u << 30) /* larger files are refused */
#define KM_HIST_CHUNKS_MAX (1u << 20) /* chunks per ring a file may claim */
#define KM_HIST_WBUF       65536      /* writer's buffer */
#define KM_HIST_POLL_SECS  0.05       /* how often the writer child is polled */

/* ---- writing -------------------------------------------------------------------- */

/* A buffered writer keeping the file's and the current record's CRC32. */
struct km_hw {
    int fd;                          /* the .tmp file */
    int err;                         /* errno of the first failed write; 0 */
    size_t n;                        /* bytes in buf */
    size_t rec;                      /* start of the record's bytes in buf */
    int in_rec;                      /* 1: a record's body is being written */
    uLong crc_file;                  /* of the bytes written out */
    uLong crc_rec;                   /* of the record's bytes before buf[rec] */
    unsigned char buf[KM_HIST_WBUF]; /* pending bytes */
};

static void km_hw_drain(struct km_hw *w)
{
    if (w->in_rec) {
        w->crc_rec = crc32(w->crc_rec, w->buf + w->rec, (uInt)(w->n - w->rec));
        w->rec = 0;
    }
    w->crc_file = crc32(w->crc_file, w->buf, (uInt)w->n);
    for (size_t off = 0; off < w->n && !w->err;) {
        ssize_t r = write(w->fd, w->buf + off, w->n - off);
        if (r < 0 && errno != EINTR)
            w->err = errno;
        else if (r > 0)
            off += (size_t)r;
    }
    w->n = 0;
}

static void km_hw_put(struct km_hw *w, const void *p, size_t len)
{
    const unsigned char *b = p;
    while (len > 0) {
        if (w->n == sizeof w->buf)
            km_hw_drain(w);
        size_t k = sizeof w->buf - w->n < len ? sizeof w->buf - w->n : len;
        memcpy(w->buf + w->n, b, k);
        w->n += k;
        b += k;
        len -= k;
    }
}

/* Integers little-endian, of `size` bytes. */
static void km_hw_int(struct km_hw *w, uint64_t v, unsigned size)
{
    unsigned char b[8];
    for (unsigned i = 0; i < size; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    km_hw_put(w, b, size);
}

static void km_hw_f64(struct km_hw *w, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    km_hw_int(w, v, 8);
}

/* A u16-counted string, cut at max bytes. */
static void km_hw_str(struct km_hw *w, const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    n = n > max ? max : n;
    km_hw_int(w, n, 2);
    km_hw_put(w, s, n);
}

/* The chunk k places after the oldest of tier i's ring. */
static const struct km_tsz *km_hist_at(const struct km_history *h,
                                       const struct km_hist *hs, unsigned i, unsigned k)
{
    unsigned n = h->geom[i].nchunks;
    return km_hist_chunk(h, hs, i, (hs->ring[i].head + n + 1 - hs->ring[i].used + k) % n);
}

static size_t km_hist_strlen(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    return n > max ? max : n;
}

/* The body's length of s's record (what km_hw_record writes). */
static size_t km_hist_reclen(const struct km_history *h, const struct km_series *s)
{
    const struct km_hist *hs = s->hist;
    size_t len = 6 + km_hist_strlen(s->family->name, 0xffff) +
                 km_hist_strlen(s->labels, 0xffff) +
                 km_hist_strlen(s->family->help, KM_HIST_HELP_MAX) + 1 + 8;
    for (unsigned i = 0; i < h->ntiers; i++) {
        len += 4 + 1 + (hs->acc[i].count > 0 ? 40 : 0);
        for (unsigned k = 0; k < hs->ring[i].used; k++) {
            size_t n;
            km_tsz_bytes(km_hist_at(h, hs, i, k), &n);
            len += 4 + n;
        }
    }
    return len;
}

static void km_hw_record(struct km_hw *w, const struct km_history *h,
                         const struct km_series *s)
{
    const struct km_hist *hs = s->hist;
    km_hw_int(w, km_hist_reclen(h, s), 4);
    w->in_rec = 1;
    w->rec = w->n;
    w->crc_rec = crc32(0L, Z_NULL, 0);
    km_hw_str(w, s->family->name, 0xffff);
    km_hw_str(w, s->labels, 0xffff);
    km_hw_str(w, s->family->help, KM_HIST_HELP_MAX);
    km_hw_int(w, (uint64_t)s->family->type, 1);
    km_hw_int(w, (uint64_t)hs->last_ms, 8);
    for (unsigned i = 0; i < h->ntiers; i++) {
        km_hw_int(w, hs->ring[i].used, 4);
        for (unsigned k = 0; k < hs->ring[i].used; k++) {
            const struct km_tsz *c = km_hist_at(h, hs, i, k);
            size_t n;
            const uint8_t *b = km_tsz_bytes(c, &n);
            km_hw_int(w, km_tsz_count(c), 2);
            km_hw_int(w, n, 2);
            km_hw_put(w, b, n);
        }
        const struct km_hist_acc *a = &hs->acc[i];
        km_hw_int(w, a->count > 0, 1);
        if (a->count > 0) {
            km_hw_int(w, (uint64_t)a->start_ms, 8);
            km_hw_f64(w, a->min);
            km_hw_f64(w, a->max);
            km_hw_f64(w, a->sum);
            km_hw_int(w, a->count, 8);
        }
    }
    uLong crc = crc32(w->crc_rec, w->buf + w->rec, (uInt)(w->n - w->rec));
    w->in_rec = 0;
    km_hw_int(w, crc, 4);
}

/* Header, records, trailer. */
static void km_hw_store(struct km_hw *w, const struct km_history *h)
{
    km_hw_put(w, KM_HIST_MAGIC, KM_HIST_MAGIC_LEN);
    km_hw_int(w, KM_HIST_VERSION, 4);
    km_hw_int(w, h->ntiers, 4);
    for (unsigned i = 0; i < h->ntiers; i++) {
        km_hw_f64(w, h->tier[i].step);
        km_hw_f64(w, h->tier[i].retention);
        km_hw_int(w, h->geom[i].ncols, 4);
        km_hw_int(w, h->geom[i].cap, 4);
        km_hw_int(w, h->geom[i].nchunks, 4);
    }
    uint64_t records = 0;
    for (struct km_family *f = km_series_families(h->reg); f; f = f->next)
        for (struct km_series *s = f->first; s; s = s->next)
            if (s->hist) {
                km_hw_record(w, h, s);
                records++;
            }
    km_hw_int(w, KM_HIST_TRAILER, 4);
    km_hw_int(w, records, 8);
    km_hw_int(w, crc32(w->crc_file, w->buf, (uInt)w->n), 4);
    km_hw_drain(w);
}

/* fsync of the directory holding path, so the rename is on disk. */
static int km_hist_sync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return -1;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int km_hist_write_fd(struct km_history *h, int fd)
{
    struct km_hw *w = malloc(sizeof *w);
    if (!w)
        return ENOMEM;
    memset(w, 0, offsetof(struct km_hw, buf));
    w->crc_file = crc32(0L, Z_NULL, 0);
    w->fd = fd;
    km_hw_store(w, h);
    int e = w->err;
    free(w);
    return e;
}

int km_hist_write(struct km_history *h, char *err, size_t errlen)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", h->path) >= (int)sizeof tmp) {
        snprintf(err, errlen, "%s: path too long", h->path);
        return -1;
    }
    const char *what = "open";
    int e = 0, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        e = errno;
    } else {
        what = "write";
        e = km_hist_write_fd(h, fd);
        if (e == ENOMEM)
            what = "out of memory";
        if (!e && fsync(fd) < 0 && (what = "fsync"))
            e = errno;
        if (close(fd) < 0 && !e && (what = "close"))
            e = errno;
    }
    int renamed = 0; /* after the rename there is no .tmp left to remove */
    if (!e && rename(tmp, h->path) < 0 && (what = "rename over the file"))
        e = errno;
    else if (!e)
        renamed = 1;
    if (!e && km_hist_sync_dir(h->path) < 0 && (what = "fsync of its directory"))
        e = errno;
    if (!e)
        return 0;
    snprintf(err, errlen, "%s: %s: %s", tmp, what, strerror(e));
    if (!renamed)
        unlink(tmp);
    return -1;
}

/* ---- the writer child ----------------------------------------------------------- */

static void km_hist_child(struct km_history *h, int fd, pid_t parent)
{
    char err[512];
    /* the parent's handlers write to libevent's signal pipe, shared with us */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    /* A writer outliving a killed katomon would race the next katomon's
       writer on PATH.tmp (both O_TRUNC it, then rename): the file could be
       torn. Dying with the parent leaves PATH as the last completed write. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(1);
    if (km_hist_write(h, err, sizeof err) == 0)
        _exit(0);
    ssize_t r = write(fd, err, strlen(err));
    (void)r;
    _exit(1);
}

void km_hist_flush_async(struct km_history *h)
{
    int fds[2];
    km_hist_reap(h, 0);
    if (h->child) {
        h->flush_skipped++;
        km_log(KM_LOG_DEBUG, "history: flush skipped: the last writer still runs");
        return;
    }
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
        h->flush_errors++;
        km_log(KM_LOG_ERROR, "history: not written: pipe: %s", strerror(errno));
        return;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        km_hist_child(h, fds[1], parent);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        h->flush_errors++;
        km_log(KM_LOG_ERROR, "history: not written: fork: %s", strerror(errno));
        return;
    }
    h->child = pid;
    h->child_fd = fds[0];
    h->child_start = km_hist_mono();
    struct timeval tv = km_timeval(KM_HIST_POLL_SECS);
    if (h->child_ev)
        event_add(h->child_ev, &tv);
}

/* Logs why the child failed: its own words from the pipe, or its status. */
static void km_hist_child_failed(struct km_history *h, int status)
{
    char why[512];
    ssize_t n = read(h->child_fd, why, sizeof why - 1);
    why[n > 0 ? n : 0] = '\0';
    h->flush_errors++;
    if (n > 0)
        km_log(KM_LOG_ERROR, "history: not written: %s", why);
    else if (WIFSIGNALED(status))
        km_log(KM_LOG_ERROR,
               "history: not written: writer (pid %ld) killed by "
               "signal %d",
               (long)h->child, WTERMSIG(status));
    else
        km_log(KM_LOG_ERROR, "history: not written: writer (pid %ld) exited with %d",
               (long)h->child, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

void km_hist_reap(struct km_history *h, int block)
{
    int status = 0;
    if (!h->child)
        return;
    pid_t r;
    do
        r = waitpid(h->child, &status, block ? 0 : WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return;
    if (r < 0) {
        h->flush_errors++;
        km_log(KM_LOG_ERROR, "history: writer (pid %ld) lost: waitpid: %s",
               (long)h->child, strerror(errno));
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        h->flushes++;
        h->last_flush_secs = km_hist_mono() - h->child_start;
    } else {
        km_hist_child_failed(h, status);
    }
    close(h->child_fd);
    h->child_fd = -1;
    h->child = 0;
    if (h->child_ev)
        event_del(h->child_ev);
}

/* ---- reading -------------------------------------------------------------------- */

/* The file's tiers, and where each goes in the store. */
struct km_hr_tier {
    double step;      /* seconds */
    double retention; /* seconds */
    unsigned ncols;   /* values per sample */
    unsigned cap;     /* chunk data bytes */
    unsigned nchunks; /* the writer's ring length */
    int to;           /* the store's tier with the same shape; -1: dropped */
};

/* A reading pass over the file in memory. */
struct km_hr {
    struct km_history *h;                         /* the store */
    const uint8_t *buf;                           /* the file */
    size_t size;                                  /* its bytes */
    size_t pos;                                   /* read position */
    size_t end;                                   /* end of what may be read now */
    int apply;                                    /* 0: check only; 1: load */
    unsigned ntiers;                              /* the file's tier count */
    struct km_hr_tier tier[KM_HISTORY_TIERS_MAX]; /* the file's tiers */
    struct km_tsz *scratch; /* a chunk of the largest cap, to check */
    uint64_t record;        /* records read */
    char why[256];          /* what is wrong */
    size_t at;              /* where */
};

/* Fails the pass with a reason at the current position; returns -1. */
__attribute__((format(printf, 2, 3))) static int km_hr_fail(struct km_hr *r,
                                                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    r->at = r->pos;
    return -1;
}

/* n bytes at the read position (advanced), or NULL when fewer are left. */
static const uint8_t *km_hr_take(struct km_hr *r, size_t n)
{
    if (r->end - r->pos < n)
        return NULL;
    const uint8_t *p = r->buf + r->pos;
    r->pos += n;
    return p;
}

/* A little-endian integer of `size` bytes into *v: 0, or -1 (failed) at the end. */
static int km_hr_int(struct km_hr *r, unsigned size, uint64_t *v, const char *what)
{
    const uint8_t *p = km_hr_take(r, size);
    *v = 0;
    if (!p)
        return km_hr_fail(r, "%s cut short", what);
    for (unsigned i = 0; i < size; i++)
        *v |= (uint64_t)p[i] << (8 * i);
    return 0;
}

static int km_hr_f64(struct km_hr *r, double *d, const char *what)
{
    uint64_t v;
    int rc = km_hr_int(r, 8, &v, what);
    memcpy(d, &v, sizeof v);
    return rc;
}

/* A u16-counted string of at most max bytes, no NUL in it, into out[max + 1]. */
static int km_hr_str(struct km_hr *r, char *out, size_t max, const char *what)
{
    uint64_t n;
    if (km_hr_int(r, 2, &n, what) < 0)
        return -1;
    if (n > max)
        return km_hr_fail(r, "%s of %u bytes (at most %zu)", what, (unsigned)n, max);
    const uint8_t *p = km_hr_take(r, n);
    if (!p)
        return km_hr_fail(r, "%s cut short", what);
    if (memchr(p, '\0', n))
        return km_hr_fail(r, "%s holds a NUL byte", what);
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

static int km_hr_header(struct km_hr *r)
{
    uint64_t version, ntiers, v[3];
    const uint8_t *magic = km_hr_take(r, KM_HIST_MAGIC_LEN);
    if (!magic || memcmp(magic, KM_HIST_MAGIC, KM_HIST_MAGIC_LEN) != 0)
        return km_hr_fail(r, "not a katomon history file (magic)");
    if (km_hr_int(r, 4, &version, "version") < 0 || km_hr_int(r, 4, &ntiers, "tiers") < 0)
        return -1;
    if (version != KM_HIST_VERSION)
        return km_hr_fail(r, "version %llu (this katomon reads %d)",
                          (unsigned long long)version, KM_HIST_VERSION);
    if (ntiers < 1 || ntiers > KM_HISTORY_TIERS_MAX)
        return km_hr_fail(r, "%llu tiers", (unsigned long long)ntiers);
    r->ntiers = (unsigned)ntiers;
    for (unsigned j = 0; j < r->ntiers; j++) {
        struct km_hr_tier *t = &r->tier[j];
        if (km_hr_f64(r, &t->step, "tier table") < 0 ||
            km_hr_f64(r, &t->retention, "tier table") < 0 ||
            km_hr_int(r, 4, &v[0], "tier table") < 0 ||
            km_hr_int(r, 4, &v[1], "tier table") < 0 ||
            km_hr_int(r, 4, &v[2], "tier table") < 0)
            return -1;
        if (!(t->step >= 0.001 && t->step <= 1e9) || !(t->retention >= t->step) ||
            !(t->retention <= 1e10) || v[0] < 1 || v[0] > KM_TSZ_COLS_MAX || v[1] < 16 ||
            v[1] > 65535 || v[2] < 1 || v[2] > KM_HIST_CHUNKS_MAX)
            return km_hr_fail(r, "tier %u: bad shape", j);
        if (j > 0 && !(t->step > r->tier[j - 1].step))
            return km_hr_fail(r, "tier %u: step not coarser than tier %u's", j, j - 1);
        t->ncols = (unsigned)v[0];
        t->cap = (unsigned)v[1];
        t->nchunks = (unsigned)v[2];
        t->to = -1;
        for (unsigned i = 0; i < r->h->ntiers; i++) {
            const struct km_hist_geom *g = &r->h->geom[i];
            if (llround(t->step * 1000) == g->step_ms && t->ncols == g->ncols &&
                t->cap == g->cap)
                t->to = (int)i;
        }
    }
    return 0;
}

/* One chunk of file tier j: checked (and loaded into hs when given). */
static int km_hr_chunk(struct km_hr *r, unsigned j, struct km_hist *hs, int load,
                       int64_t *prev)
{
    const struct km_hr_tier *t = &r->tier[j];
    uint64_t count, n;
    if (km_hr_int(r, 2, &count, "chunk") < 0 || km_hr_int(r, 2, &n, "chunk") < 0)
        return -1;
    if (count < 1 || n > t->cap)
        return km_hr_fail(r, "tier %u: chunk of %llu samples in %llu bytes", j,
                          (unsigned long long)count, (unsigned long long)n);
    const uint8_t *p = km_hr_take(r, n);
    if (!p)
        return km_hr_fail(r, "chunk cut short");
    if (load)
        return km_hist_push_chunk(r->h, hs, (unsigned)t->to, (unsigned)count, p, n) ==
                       KM_TSZ_OK
                   ? 0
                   : km_hr_fail(r, "chunk does not load");
    if (km_tsz_load(r->scratch, t->cap, t->ncols, (unsigned)count, p, n) != KM_TSZ_OK)
        return km_hr_fail(r, "tier %u: chunk does not decode", j);
    if (km_tsz_first(r->scratch) <= *prev)
        return km_hr_fail(r, "tier %u: chunks out of time order", j);
    *prev = km_tsz_last(r->scratch);
    return 0;
}

/* File tier j of a record: its chunks and its open bucket. */
static int km_hr_tier_data(struct km_hr *r, unsigned j, struct km_hist *hs)
{
    const struct km_hr_tier *t = &r->tier[j];
    uint64_t used, flag;
    int64_t prev = INT64_MIN;
    if (km_hr_int(r, 4, &used, "chunk count") < 0)
        return -1;
    if (used > t->nchunks)
        return km_hr_fail(r, "tier %u: %llu chunks in a ring of %u", j,
                          (unsigned long long)used, t->nchunks);
    /* a shorter ring now: keep the newest chunks */
    uint64_t skip = 0;
    if (hs && t->to >= 0 && used > r->h->geom[t->to].nchunks)
        skip = used - r->h->geom[t->to].nchunks;
    for (uint64_t k = 0; k < used; k++)
        if (km_hr_chunk(r, j, hs, hs && t->to >= 0 && k >= skip, &prev) < 0)
            return -1;
    if (km_hr_int(r, 1, &flag, "open bucket") < 0)
        return -1;
    if (flag > 1 || (flag && t->ncols != KM_HIST_AGG_COLS))
        return km_hr_fail(r, "tier %u: bad open bucket", j);
    if (!flag)
        return 0;
    struct km_hist_acc a;
    uint64_t start;
    if (km_hr_int(r, 8, &start, "open bucket") < 0 ||
        km_hr_f64(r, &a.min, "open bucket") || km_hr_f64(r, &a.max, "open bucket") ||
        km_hr_f64(r, &a.sum, "open bucket") ||
        km_hr_int(r, 8, &a.count, "open bucket") < 0)
        return -1;
    a.start_ms = (int64_t)start;
    if (a.count < 1 || !(a.min <= a.max))
        return km_hr_fail(r, "tier %u: bad open bucket", j);
    if (hs && t->to >= 0)
        hs->acc[t->to] = a;
    return 0;
}

/* The series a record names, in the registry, with a new block; NULL: skip it. */
static struct km_series *km_hr_series(struct km_hr *r, const char *name,
                                      const char *labels, const char *help, unsigned type)
{
    struct km_series *s =
        km_series_get(r->h->reg, name, help, (enum km_series_type)type, labels);
    if (!s || s->hist) {
        r->h->load_skipped++;
        return NULL;
    }
    if (!(s->hist = km_hist_new(r->h))) {
        r->h->load_skipped++;
        return NULL;
    }
    if (s->time_us == 0)
        km_series_stale(s); /* until its topic publishes it again */
    r->h->loaded++;
    return s;
}

static int km_hr_body(struct km_hr *r)
{
    char name[KM_SERIES_NAME_MAX + 1], labels[KM_SERIES_LABELS_MAX + 1],
        help[KM_HIST_HELP_MAX + 1];
    uint64_t type, last;
    if (km_hr_str(r, name, KM_SERIES_NAME_MAX, "name") < 0 ||
        km_hr_str(r, labels, KM_SERIES_LABELS_MAX, "labels") < 0 ||
        km_hr_str(r, help, KM_HIST_HELP_MAX, "help") < 0 ||
        km_hr_int(r, 1, &type, "type") < 0 || km_hr_int(r, 8, &last, "last time") < 0)
        return -1;
    if (!name[0] || type > KM_SERIES_COUNTER)
        return km_hr_fail(r, "bad name or type");
    struct km_series *s =
        r->apply ? km_hr_series(r, name, labels, help, (unsigned)type) : NULL;
    struct km_hist *hs = s ? s->hist : NULL;
    for (unsigned j = 0; j < r->ntiers; j++)
        if (km_hr_tier_data(r, j, hs) < 0)
            return -1;
    /* appends go on after the newest point loaded (the tiers kept may
       end before `last`) */
    if (hs)
        hs->last_ms = llround(km_history_last(r->h, s) * 1000);
    if (r->pos != r->end)
        return km_hr_fail(r, "%zu bytes left over", r->end - r->pos);
    return 0;
}

/* One record (pos at its length) or the trailer: 1, 0 at the trailer, -1. */
static int km_hr_record(struct km_hr *r)
{
    uint64_t len, crc;
    r->end = r->size;
    if (km_hr_int(r, 4, &len, "record length") < 0)
        return -1;
    if (len == KM_HIST_TRAILER)
        return 0;
    if (len > r->size - r->pos || r->size - r->pos - len < 4)
        return km_hr_fail(r, "record %llu: %llu bytes cut short",
                          (unsigned long long)r->record, (unsigned long long)len);
    /* the CRC first: a damaged body is reported as such, not as what it
       happens to decode to */
    const uint8_t *body = r->buf + r->pos;
    crc = 0;
    for (unsigned i = 0; i < 4; i++)
        crc |= (uint64_t)body[len + i] << (8 * i);
    if (crc != crc32(crc32(0L, Z_NULL, 0), body, (uInt)len))
        return km_hr_fail(r, "record %llu: CRC mismatch", (unsigned long long)r->record);
    r->end = r->pos + len;
    if (km_hr_body(r) < 0)
        return -1;
    r->end = r->size;
    r->pos += 4;
    r->record++;
    return 1;
}

/* A whole pass: 0, or -1 with r->why and r->at. */
static int km_hr_pass(struct km_hr *r)
{
    uint64_t n, crc;
    r->pos = 0;
    r->end = r->size;
    r->record = 0;
    if (km_hr_header(r) < 0)
        return -1;
    int rc;
    while ((rc = km_hr_record(r)) == 1)
        ;
    if (rc < 0)
        return -1;
    size_t crc_at = r->pos + 8;
    if (km_hr_int(r, 8, &n, "trailer") < 0 || km_hr_int(r, 4, &crc, "trailer") < 0)
        return -1;
    if (n != r->record)
        return km_hr_fail(r, "trailer counts %llu records, %llu read",
                          (unsigned long long)n, (unsigned long long)r->record);
    if (crc != crc32(crc32(0L, Z_NULL, 0), r->buf, (uInt)crc_at))
        return km_hr_fail(r, "file CRC mismatch");
    if (r->pos != r->size)
        return km_hr_fail(r, "%zu bytes after the trailer", r->size - r->pos);
    return 0;
}

/* Renames the bad file aside and logs one line saying what and where. */
static void km_hist_set_aside(struct km_history *h, const char *why)
{
    char aside[4200];
    snprintf(aside, sizeof aside, "%s.corrupt-%lld", h->path, (long long)time(NULL));
    if (rename(h->path, aside) == 0)
        km_log(KM_LOG_ERROR, "history: %s: %s; set aside as %s, starting empty", h->path,
               why, aside);
    else
        km_log(KM_LOG_ERROR, "history: %s: %s; starting empty (not set aside: %s)",
               h->path, why, strerror(errno));
}

/* Reads the whole file into *buf: its size, or -1 with why (-2: not a
   regular file). */
static ssize_t km_hist_slurp(const char *path, uint8_t **buf, char *why, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        snprintf(why, len, "open: %s", strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        snprintf(why, len, "fstat: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, len, "not a regular file");
        close(fd);
        return -2;
    }
    if (st.st_size > KM_HIST_FILE_MAX) {
        snprintf(why, len, "%lld bytes, larger than 1 GiB", (long long)st.st_size);
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size, got = 0;
    *buf = malloc(size ? size : 1);
    while (*buf && got < size) {
        ssize_t r = read(fd, *buf + got, size - got);
        if (r <= 0 && !(r < 0 && errno == EINTR)) {
            snprintf(why, len, "read: %s", r < 0 ? strerror(errno) : "file shrank");
            break;
        }
        got += r > 0 ? (size_t)r : 0;
    }
    close(fd);
    if (!*buf)
        snprintf(why, len, "out of memory");
    return *buf && got == size ? (ssize_t)size : -1;
}

/* Logs the tiers of the file that are not loaded. */
static void km_hr_log_tiers(const struct km_hr *r, const char *name)
{
    for (unsigned j = 0; j < r->ntiers; j++)
        if (r->tier[j].to < 0)
            km_log(KM_LOG_WARNING,
                   "history: %s: tier %u (%g s step, %g s retention) "
                   "is not in the configured tiers: its points are dropped",
                   name, j, r->tier[j].step, r->tier[j].retention);
}

int km_hist_load_buf(struct km_history *h, const uint8_t *buf, size_t size, char *why,
                     size_t whylen)
{
    const char *name = h->path ? h->path : "(memory)";
    struct km_hr r = {.h = h, .buf = buf, .size = size};
    int rc = 0;
    r.scratch = malloc(km_tsz_size(65535));
    if (!r.scratch) {
        snprintf(why, whylen, "out of memory");
        rc = -2;
    } else if (km_hr_pass(&r) < 0) {
        snprintf(why, whylen, "%s at byte %zu", r.why, r.at);
        rc = -1;
    } else {
        km_hr_log_tiers(&r, name);
        r.apply = 1;
        if (km_hr_pass(&r) < 0) /* checked: only a chunk that fits no more */
            km_log(KM_LOG_ERROR, "history: %s: %s at byte %zu", name, r.why, r.at);
        km_log(KM_LOG_NOTICE, "history: %s: %llu series loaded (%llu skipped)", name,
               (unsigned long long)h->loaded, (unsigned long long)h->load_skipped);
    }
    free(r.scratch);
    return rc;
}

void km_hist_load(struct km_history *h)
{
    uint8_t *buf = NULL;
    struct km_hr r = {.h = h};
    if (access(h->path, F_OK) < 0 && errno == ENOENT) {
        km_log(KM_LOG_INFO, "history: %s: no file yet, starting empty", h->path);
        return;
    }
    ssize_t size = km_hist_slurp(h->path, &buf, r.why, sizeof r.why);
    if (size == -2) { /* not ours to move: a directory, a device */
        km_log(KM_LOG_ERROR, "history: %s: %s; starting empty", h->path, r.why);
        return;
    }
    if (size < 0) {
        km_hist_set_aside(h, r.why);
        free(buf);
        return;
    }
    char why[320];
    int rc = km_hist_load_buf(h, buf, (size_t)size, why, sizeof why);
    if (rc == -2)
        km_log(KM_LOG_ERROR, "history: %s: out of memory, starting empty", h->path);
    else if (rc < 0)
        km_hist_set_aside(h, why);
    free(buf);
}
