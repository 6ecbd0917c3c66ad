/*
 * alert_history.h - alert_manager's persistent alert history: the records
 * of STATE_DIR/alerts.jsonl, in memory and on disk.
 *
 * A record is a transition of one alert key (issue 16): it fired,
 * escalated, de-escalated or resolved (alert_eval.h). A re-send while an
 * alert holds is not a record: it is counted on the key's open record
 * ("repeats", "last_seen"), so an alert firing for an hour with a one-
 * minute cooldown is one record with "repeats": 59, not sixty.
 *
 * Built into alert_manager.so (with -fvisibility=hidden: nothing here is
 * exported).
 */
#ifndef AM_ALERT_HISTORY_H
#define AM_ALERT_HISTORY_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include <katomon/plugin.h>

/* The history: its records and its file. */
struct am_history {
    const struct km_host *host; /* the core (logging, state_dir) */
    struct km_ctx *ctx;         /* alert_manager's handle */
    json_t *entries;            /* records, oldest first */
    json_t *index;              /* only while loading: id -> record (a folded
                                   re-send's id -> the record it was folded
                                   into) */
    json_t *open;               /* only while loading: key -> its open record */
    char *path;                 /* STATE_DIR/alerts.jsonl */
    int fd;                     /* append descriptor; -1 when history is off */
    size_t file_bytes;          /* current file size */
    size_t compact_at;          /* file size that compacts it: max_bytes, or
                                   twice what the last compaction wrote when
                                   the records kept take more than that */
    int dirty;                  /* written but not yet fdatasync()ed */
    long long max_entries;      /* [plugin alert_manager] max_entries */
    long long max_bytes;        /* max_bytes: compaction threshold */
    double max_age_s;           /* max_age_days, in seconds */
    uint64_t next_id;           /* the largest alert id given ("a<N>") */
    unsigned old;               /* records of the old format read at load */
    unsigned folded;            /* of them, re-sends folded into a record */
};

/*
 * Sets h up (entries empty, no file) and opens STATE_DIR/alerts.jsonl:
 * reads it back (see alert_history.c for the migration of files written
 * before issue 16), then appends to it. A state_dir or file that cannot be
 * used turns the history's file off with one error line (the history is
 * still kept in memory). 0, or -1 on ENOMEM.
 */
int am_history_open(struct am_history *h, const struct km_host *host, struct km_ctx *ctx,
                    long long max_entries, long long max_bytes, double max_age_s);

/*
 * Records one alert of a batch published at `when` (ISO 8601) as batch
 * `batch`: a transition ("repeats" 0 or absent) becomes a new record,
 * unread, with "timestamp", "batch", "repeats": 0 and "last_seen"; a
 * re-send ("repeats" N > 0) sets "repeats" and "last_seen" of the record
 * with its id, if it is still in the history (a cleared or trimmed one is
 * not made again). Call am_history_done after the batch.
 */
void am_history_add(struct am_history *h, json_t *alert, const char *when,
                    const char *batch);

/* After a batch: trims to max_entries / max_age_days and compacts the file
   past max_bytes. */
void am_history_done(struct am_history *h);

/* The record with this id (borrowed), or NULL. */
json_t *am_history_find(struct am_history *h, const char *id);

/* Appends an {"op": ...} line (read, read_all, clear) to the file, then
   compacts it past max_bytes. The caller applied it in memory. */
void am_history_op(struct am_history *h, json_t *line);

/* fdatasync()s what was written since the last call (a timer's job). */
void am_history_sync(struct am_history *h);

/* Syncs and closes the file, frees everything. */
void am_history_close(struct am_history *h);

#endif /* AM_ALERT_HISTORY_H */
