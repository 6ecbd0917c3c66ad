/*
 * fuzz_alert_history.c - alert_manager's history file, STATE_DIR/alerts.jsonl
 * (plugins/alert_history.c), as a crash, a disk error or a hand edit may
 * leave it: the input is the file.
 *
 * FUZZ_SOURCES: plugins/alert_history.c
 *
 * The file lives in a directory of its own under /dev/shm (memory; else
 * $TMPDIR or /tmp), made once per process: loading reads a file by its
 * path, so this is the one harness with file I/O on its hot path.
 *
 * Properties:
 *   - loading (am_history_open) never crashes or leaks, whatever the
 *     lines: torn, not JSON, not objects, ops and records of any shape,
 *     the format before issue 16 (folded re-sends);
 *   - what it loaded, written back by its own compaction (max_bytes 0:
 *     the file is rewritten at open), loads again to the same records
 *     (json_equal, in order) and the same next alert id;
 *   - every record loaded has a string "id".
 * (A record last seen right at the age limit may expire between the two
 * loads: max_age_days is measured from now. Such an input is not compared.)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <katomon/util.h>

#include "../../plugins/alert_history.h"
#include "fuzz.h"
#include "fuzz_host.h"

/* A plugin descriptor for the fake core's config lookups (none here). */
static const struct km_plugin no_plugin = {.name = "alert_manager"};

#define MAX_ENTRIES 1000000
#define MAX_AGE_S   (50.0 * 365 * 86400) /* records seen since 1976 are kept */

static char dir[256];
static char path[300];

static void cleanup(void)
{
    char p[320];
    unlink(path);
    snprintf(p, sizeof p, "%s.1", path);
    unlink(p);
    snprintf(p, sizeof p, "%s.tmp", path);
    unlink(p);
    rmdir(dir);
}

static void setup(void)
{
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/km-fuzz-history-XXXXXX", base ? base : "/tmp");
    FUZZ_CHECKF(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/alerts.jsonl", dir);
    atexit(cleanup);
}

static void write_file(const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(size == 0 || write(fd, data, size) == (ssize_t)size);
    close(fd);
}

/* The trim cutoff now (am_history's: records last seen before it go). */
static void cutoff(char *out, size_t len)
{
    km_format_iso(km_wall_us() - (int64_t)(MAX_AGE_S * 1e6), 3, out, len);
}

/* 1 when a record was last seen between c0 and c1: the age limit passed
   it between two loads, so it may go (a clock, not a bug). */
static int racy(json_t *records, const char *c0, const char *c1)
{
    size_t i;
    json_t *e;
    json_array_foreach(records, i, e)
    {
        const char *ts = json_string_value(json_object_get(e, "last_seen"));
        if (!ts)
            ts = json_string_value(json_object_get(e, "timestamp"));
        if (ts && strcmp(ts, c0) >= 0 && strcmp(ts, c1) <= 0)
            return 1;
    }
    return 0;
}

/* Opens the history (loading the file, rewriting it), returns its records
   (a copy) and next id, closes it. */
static json_t *load(uint64_t *next_id)
{
    struct am_history h;
    FUZZ_CHECK(am_history_open(&h, &fh_host, FH_CTX, MAX_ENTRIES, 0, MAX_AGE_S) == 0);
    FUZZ_CHECK(h.fd >= 0); /* the file is on: a memory file system */
    json_t *copy = json_deep_copy(h.entries);
    FUZZ_CHECK(copy != NULL);
    *next_id = h.next_id;
    am_history_close(&h);
    return copy;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t n1, n2;
    size_t i;
    json_t *e;

    if (!dir[0])
        setup();
    fh_reset(&no_plugin);
    fh.state_dir = dir;
    write_file(data, size);
    char c0[40], c1[40];
    cutoff(c0, sizeof c0);
    json_t *first = load(&n1);
    json_array_foreach(first, i, e) FUZZ_CHECK(json_is_string(json_object_get(e, "id")));
    json_t *second = load(&n2);
    cutoff(c1, sizeof c1);
    FUZZ_CHECKF(json_equal(first, second) || racy(first, c0, c1),
                "%zu records loaded, %zu after compaction", json_array_size(first),
                json_array_size(second));
    FUZZ_CHECKF(n1 == n2, "next id %llu, %llu after compaction", (unsigned long long)n1,
                (unsigned long long)n2);
    json_decref(first);
    json_decref(second);
    fh_reset(&no_plugin);
    return 0;
}
