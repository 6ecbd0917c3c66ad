/*
 * alert_history.c - alert_manager's persistent history (see
 * alert_history.h).
 *
 * File: STATE_DIR/alerts.jsonl, one JSON object per line: a record (it has
 * an "id"), or an action as {"op": ...}: "read" {"ids"}, "read_all",
 * "clear" {"next_id"}, and "seen" {"id", "repeats", "last_seen"}, which a
 * re-send appends (a line of ~90 bytes instead of a whole record), so the
 * file is append-only between compactions and a kill -9 loses nothing that
 * was written. fsync policy: each line goes out with one write(), which
 * survives kill -9 (the data is in the kernel); fdatasync() runs from a
 * timer at most every `sync_interval` seconds while there is unsynced
 * data, bounding what a power loss can take and keeping disk flushes off
 * the hot path. When the file passes max_bytes it is compacted: records
 * seen within max_age_days, at most max_entries, are written (with their
 * repeats folded in) to a temporary file that replaces it (the old one is
 * kept as alerts.jsonl.1); when those records alone take more than half of
 * max_bytes, the next compaction waits until the file doubles. A torn last line (a write
 * cut by a power loss or a full disk) is skipped on load and cut from the file before
 * anything is appended (a short write is cut at once), so the next line never glues onto
 * it; what was loaded is trimmed to max_entries / max_age_days at once. Alert ids ("a1",
 * "a2", ...) go on from the largest ever given, also across a clear and a restart: the
 * {"op": "clear"} line (and the first line of a compacted file) records "next_id".
 *
 * Migration (files written before issue 16, one record per re-send): a
 * record without "repeats" is of the old format. Loading folds such a
 * "firing" record into the open record of its "key" when that one fires
 * at the same level (it was a re-send): that record's "repeats" counts it
 * and its "last_seen" takes its time; a read mark on the folded id marks
 * that record. Every other old record is kept as a transition (a firing
 * one at another level was an escalation or a de-escalation) with
 * "repeats": 0 and "last_seen" its own time (so is a record without
 * "key", which cannot be folded). When the file held old records it is compacted at once,
 * so it is written in the new format (the old file kept as .1) and the
 * next start reads it as it is.
 */
#include "alert_history.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <katomon/util.h>

#define LINE_MAX_LEN 65536 /* longest history line read back */

static void append_line(struct am_history *h, json_t *obj)
{
    if (h->fd < 0)
        return;
    char *text = json_dumps(obj, JSON_COMPACT);
    if (!text)
        return;
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the NUL: one write() per line */
    ssize_t w = write(h->fd, text, len + 1);
    free(text);
    if (w != (ssize_t)(len + 1)) {
        h->host->log(h->ctx, KM_LOG_ERROR, "cannot append to %s: %s", h->path,
                     w < 0 ? strerror(errno) : "short write");
        /* a partial line (disk full) would glue the next one onto it */
        if (w > 0 && ftruncate(h->fd, (off_t)h->file_bytes) < 0)
            h->host->log(h->ctx, KM_LOG_ERROR, "cannot cut a partial line from %s: %s",
                         h->path, strerror(errno));
        return;
    }
    h->file_bytes += (size_t)w;
    h->dirty = 1;
}

/* When a record was last true: "last_seen" (an open record's last re-send),
   else its "timestamp". */
static const char *seen_at(json_t *e)
{
    const char *ts = json_string_value(json_object_get(e, "last_seen"));
    return ts ? ts : json_string_value(json_object_get(e, "timestamp"));
}

static void trim(struct am_history *h)
{
    char cutoff[32];
    km_format_iso(km_wall_us() - (int64_t)(h->max_age_s * 1e6), 3, cutoff, sizeof cutoff);
    while (json_array_size(h->entries) > 0) {
        const char *ts = seen_at(json_array_get(h->entries, 0));
        if (json_array_size(h->entries) <= (size_t)h->max_entries && ts &&
            strcmp(ts, cutoff) >= 0)
            break;
        json_array_remove(h->entries, 0);
    }
}

/* Rewrites the file with what is in memory (the old one kept as .1). */
static void compact(struct am_history *h)
{
    char tmp[4200], old[4200];
    size_t i;
    json_t *e;

    trim(h);
    snprintf(tmp, sizeof tmp, "%s.tmp", h->path);
    snprintf(old, sizeof old, "%s.1", h->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        h->host->log(h->ctx, KM_LOG_ERROR, "cannot compact %s: %s", h->path,
                     strerror(errno));
        return;
    }
    size_t bytes = 0;
    int ok = 1;
    char head[80];
    int hlen = snprintf(head, sizeof head, "{\"op\":\"clear\",\"next_id\":%llu}\n",
                        (unsigned long long)h->next_id);
    if (write(fd, head, (size_t)hlen) != hlen)
        ok = 0;
    bytes += (size_t)hlen;
    json_array_foreach(h->entries, i, e)
    {
        char *text = json_dumps(e, JSON_COMPACT);
        size_t len = text ? strlen(text) : 0;
        if (text)
            text[len] = '\n';
        if (!text || write(fd, text, len + 1) != (ssize_t)(len + 1))
            ok = 0;
        bytes += len + 1;
        free(text);
    }
    if (!ok || fdatasync(fd) < 0) {
        h->host->log(h->ctx, KM_LOG_ERROR, "cannot compact %s: write failed", h->path);
        close(fd);
        unlink(tmp);
        return;
    }
    if (link(h->path, old) < 0 && errno == EEXIST) {
        unlink(old);
        if (link(h->path, old) < 0) {
            /* keeping no .1 is not worth failing over */
        }
    }
    if (rename(tmp, h->path) < 0) {
        close(fd);
        unlink(tmp);
        return;
    }
    if (h->fd >= 0)
        close(h->fd);
    close(fd);
    h->fd = open(h->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    h->file_bytes = bytes;
    h->dirty = 0;
    /* when max_entries records take more than max_bytes, the file is past
       it at once: compacting again at every new line would rewrite and
       fdatasync the whole file on the loop for each alert (485 alerts/s
       fell to 42); waiting until it doubles keeps that amortized */
    h->compact_at = bytes > (size_t)h->max_bytes / 2 ? 2 * bytes : (size_t)h->max_bytes;
}

/* Compacts when the file has grown past max_bytes (records or op lines),
   or past twice its last compacted size when that was more. */
static void maybe_compact(struct am_history *h)
{
    if (h->fd >= 0 && h->file_bytes > h->compact_at)
        compact(h);
}

json_t *am_history_find(struct am_history *h, const char *id)
{
    if (h->index) /* loading: folded ids too */
        return json_object_get(h->index, id);
    for (size_t i = json_array_size(h->entries); i-- > 0;) { /* open ones are recent */
        json_t *e = json_array_get(h->entries, i);
        const char *eid = json_string_value(json_object_get(e, "id"));
        if (eid && strcmp(eid, id) == 0)
            return e;
    }
    return NULL;
}

/* Sets the count of re-sends of record e and when the last one was. */
static void set_seen(json_t *e, json_int_t repeats, const char *when)
{
    json_object_set_new(e, "repeats", json_integer(repeats));
    json_object_set_new(e, "last_seen", json_string(when));
}

/* Loading: one record line (line borrowed), folded or kept. */
static void load_record(struct am_history *h, json_t *line)
{
    const char *id = json_string_value(json_object_get(line, "id"));
    const char *key = json_string_value(json_object_get(line, "key"));
    const char *state = json_string_value(json_object_get(line, "state"));
    const char *ts = json_string_value(json_object_get(line, "timestamp"));
    int firing = state && strcmp(state, "firing") == 0;
    unsigned long long n = id[0] == 'a' ? strtoull(id + 1, NULL, 10) : 0;

    /* an id past INT64_MAX was never given (the clear line could not carry
       it: JSON integers are signed; found by tests/fuzz) */
    if (n > INT64_MAX)
        n = 0;
    if (n > h->next_id) /* a folded id counts: it was given */
        h->next_id = n;
    if (!json_object_get(line, "repeats") && ts) { /* before issue 16 */
        json_t *open = key ? json_object_get(h->open, key) : NULL;
        h->old++; /* rewritten in the new format */
        if (firing && open &&
            json_equal(json_object_get(open, "level"), json_object_get(line, "level"))) {
            json_int_t r = json_integer_value(json_object_get(open, "repeats"));
            /* saturated: a hand-edited INT64_MAX must not overflow */
            set_seen(open, r < INT64_MAX ? r + 1 : r, ts);
            json_object_set(h->index, id, open); /* its read mark lands there */
            h->folded++;
            return;
        }
        set_seen(line, 0, ts);
    }
    json_array_append(h->entries, line);
    json_object_set(h->index, id, line);
    if (key && firing)
        json_object_set(h->open, key, line);
    else if (key)
        json_object_del(h->open, key);
}

/* Applies one line of the file: a record, or an {"op"} action. */
static void apply(struct am_history *h, json_t *line)
{
    const char *op = json_string_value(json_object_get(line, "op"));
    size_t i;
    json_t *e, *id;

    if (!op) {
        if (json_is_string(json_object_get(line, "id")))
            load_record(h, line);
        return;
    }
    if (strcmp(op, "clear") == 0) {
        json_t *n = json_object_get(line, "next_id");
        json_array_clear(h->entries);
        json_object_clear(h->index);
        json_object_clear(h->open);
        if (json_is_integer(n) && json_integer_value(n) >= 0 &&
            (uint64_t)json_integer_value(n) > h->next_id)
            h->next_id = (uint64_t)json_integer_value(n);
    } else if (strcmp(op, "read_all") == 0) {
        json_array_foreach(h->entries, i, e) json_object_set_new(e, "read", json_true());
    } else if (strcmp(op, "read") == 0) {
        json_array_foreach(json_object_get(line, "ids"), i, id)
        {
            json_t *hit =
                json_is_string(id) ? am_history_find(h, json_string_value(id)) : NULL;
            if (hit)
                json_object_set_new(hit, "read", json_true());
        }
    } else if (strcmp(op, "seen") == 0) {
        const char *rid = json_string_value(json_object_get(line, "id"));
        const char *when = json_string_value(json_object_get(line, "last_seen"));
        json_t *r = json_object_get(line, "repeats");
        json_t *hit = rid ? am_history_find(h, rid) : NULL;
        if (hit && when && json_is_integer(r))
            set_seen(hit, json_integer_value(r), when);
    }
}

/* Reads the file back at start (before the loop runs; bounded by max_bytes).
   Returns the bytes of its whole lines (each ends in '\n'); *tail: the bytes
   of a last line without one (0: none), *tail_ok: 1 when that line parsed
   (whole but for its newline) and was applied. */
static size_t load(struct am_history *h, size_t *tail, int *tail_ok)
{
    FILE *f = fopen(h->path, "r");
    char *line = NULL;
    size_t cap = 0, whole = 0;
    ssize_t n;
    unsigned bad = 0;

    *tail = 0;
    *tail_ok = 0;
    if (!f)
        return 0;
    h->index = json_object();
    h->open = json_object();
    while ((n = getline(&line, &cap, f)) > 0) {
        json_t *j = n < LINE_MAX_LEN ? json_loadb(line, (size_t)n, 0, NULL) : NULL;
        int ok = json_is_object(j) && h->index && h->open;
        if (ok)
            apply(h, j);
        else
            bad++;
        json_decref(j);
        if (line[n - 1] == '\n') {
            whole += (size_t)n;
        } else { /* only the last line can lack it */
            *tail = (size_t)n;
            *tail_ok = ok;
        }
    }
    free(line);
    fclose(f);
    json_decref(h->index);
    json_decref(h->open);
    h->index = h->open = NULL;
    trim(h); /* max_entries / max_age_days may be smaller than last time */
    h->host->log(h->ctx, KM_LOG_INFO, "history: %zu alerts from %s%s",
                 json_array_size(h->entries), h->path,
                 bad ? " (torn or unreadable lines skipped)" : "");
    return whole;
}

int am_history_open(struct am_history *h, const struct km_host *host, struct km_ctx *ctx,
                    long long max_entries, long long max_bytes, double max_age_s)
{
    const char *dir = host->state_dir(ctx);
    struct stat st;
    size_t len = strlen(dir) + sizeof "/alerts.jsonl";

    memset(h, 0, sizeof *h);
    h->host = host;
    h->ctx = ctx;
    h->fd = -1;
    h->max_entries = max_entries;
    h->max_bytes = max_bytes;
    h->max_age_s = max_age_s;
    h->compact_at = (size_t)max_bytes;
    if (!(h->entries = json_array()) || !(h->path = malloc(len)))
        return -1;
    snprintf(h->path, len, "%s/alerts.jsonl", dir);
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        host->log(ctx, KM_LOG_ERROR,
                  "cannot create state_dir %s: %s; alert history is off (fix [core] "
                  "state_dir)",
                  dir, strerror(errno));
        return 0;
    }
    size_t tail;
    int tail_ok;
    size_t whole = load(h, &tail, &tail_ok);
    h->fd = open(h->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (h->fd < 0) {
        host->log(ctx, KM_LOG_ERROR, "cannot open %s: %s; alert history is off", h->path,
                  strerror(errno));
        return 0;
    }
    /* A last line without its newline (kill -9 or a full disk mid-write,
       a power loss): the next record must not be glued onto it, which would
       make both one unreadable line and lose the new record at the next
       start. A line whole but for its newline gets it; a torn one is cut. */
    if (tail && tail_ok && write(h->fd, "\n", 1) != 1) {
        host->log(ctx, KM_LOG_ERROR, "cannot append to %s: %s; alert history is off",
                  h->path, strerror(errno));
        close(h->fd);
        h->fd = -1;
        return 0;
    } else if (tail && !tail_ok) {
        if (ftruncate(h->fd, (off_t)whole) < 0) {
            host->log(ctx, KM_LOG_ERROR,
                      "cannot cut the torn last line of %s: %s; alert history is off",
                      h->path, strerror(errno));
            close(h->fd);
            h->fd = -1;
            return 0;
        }
        host->log(ctx, KM_LOG_NOTICE, "history: a torn last line (%zu bytes) cut from %s",
                  tail, h->path);
    }
    h->file_bytes = fstat(h->fd, &st) == 0 ? (size_t)st.st_size : 0;
    if (h->old) {
        host->log(ctx, KM_LOG_NOTICE,
                  "history: %u records of the format before issue 16 (one per re-send), "
                  "%u re-sends folded into their transitions; %s rewritten, the old file "
                  "kept as alerts.jsonl.1",
                  h->old, h->folded, h->path);
        compact(h);
    } else if (h->file_bytes > (size_t)h->max_bytes) {
        compact(h);
    }
    return 0;
}

void am_history_add(struct am_history *h, json_t *alert, const char *when,
                    const char *batch)
{
    json_int_t repeats = json_integer_value(json_object_get(alert, "repeats"));

    if (repeats > 0) { /* a re-send: counted on its open record */
        const char *id = json_string_value(json_object_get(alert, "id"));
        json_t *open = id ? am_history_find(h, id) : NULL;
        if (!open)
            return; /* cleared or trimmed since: not made again */
        set_seen(open, repeats, when);
        json_t *line = json_pack("{s:s, s:s, s:I, s:s}", "op", "seen", "id", id,
                                 "repeats", repeats, "last_seen", when);
        append_line(h, line);
        json_decref(line);
        return;
    }
    json_t *entry = json_deep_copy(alert);
    if (!entry)
        return;
    json_object_set_new(entry, "timestamp", json_string(when));
    json_object_set_new(entry, "batch", json_string(batch));
    json_object_set_new(entry, "read", json_false());
    set_seen(entry, 0, when);
    append_line(h, entry);
    json_array_append_new(h->entries, entry);
}

void am_history_done(struct am_history *h)
{
    trim(h);
    maybe_compact(h);
}

void am_history_op(struct am_history *h, json_t *line)
{
    append_line(h, line);
    maybe_compact(h);
}

void am_history_sync(struct am_history *h)
{
    if (h->dirty && h->fd >= 0 && fdatasync(h->fd) == 0)
        h->dirty = 0;
}

void am_history_close(struct am_history *h)
{
    if (h->fd >= 0) {
        fdatasync(h->fd);
        close(h->fd);
    }
    free(h->path);
    json_decref(h->entries);
    memset(h, 0, sizeof *h);
    h->fd = -1;
}
