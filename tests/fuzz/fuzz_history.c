/*
 * fuzz_history.c - the history store's file (core/history_file.c): the
 * reader that runs at every start on whatever the disk holds, and the
 * writer, through km_hist_load_buf and km_hist_write_fd (memory, a memfd).
 *
 * Input: byte 0 % 3 picks the mode:
 *   0  the rest is a file, as is;
 *   1  the rest is a file whose magic, version, record CRCs and file CRC
 *      the harness sets right first (so the fuzzer gets past the CRCs to
 *      the bodies, chunks and bounds);
 *   2  the rest drives a store: 3 bytes per step (series, value, seconds
 *      to the next sample; 100 steps at most); the store is written, and
 *      that file is the input of the properties below.
 * The store: tiers 1 s:60 s and 10 s:600 s, at most 64 series.
 *
 * Properties, for every input:
 *   - reading never crashes, leaks or reads out of bounds; a refused file
 *     leaves the store and the registry empty, with a reason naming a byte
 *     within the file;
 *   - a file the reader accepts, written back by the writer, is accepted
 *     again, with as many series, and written again gives the same bytes
 *     (a file the writer wrote in mode 2: the same bytes at once).
 */
#define _GNU_SOURCE /* memfd_create */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "fuzz.h"
#include "history_int.h"
#include "log.h"

static const struct km_history_opts opts = {
    .ntiers = 2, .tier = {{1, 60}, {10, 600}}, .flush_interval = 0, .path = NULL};

static int memfd = -1;

/* ASan's defaults for this harness (ASAN_OPTIONS still overrides them): a
   quarantine of freed blocks of 16 MB, not 256. An input frees far less
   than that (two small stores and three files of at most 4 KB), so a use
   after free within an input, or of the inputs just before, is caught as
   before; cycling 256 MB through the allocator made most blocks fresh
   pages (a page fault and a fill each) and the harness's 232 MB of RSS. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "quarantine_size_mb=16";
}

struct store {
    struct km_series_reg *reg;
    struct km_history *h;
};

static void store_new(struct store *s)
{
    char err[256];
    s->reg = km_series_reg_new(64);
    FUZZ_CHECK(s->reg != NULL);
    s->h = km_history_new(NULL, s->reg, &opts, err, sizeof err);
    FUZZ_CHECKF(s->h != NULL, "%s", err);
}

static void store_free(struct store *s)
{
    km_history_free(s->h);
    km_series_reg_free(s->reg);
}

/* The store's file (malloc'd, *len bytes). */
static uint8_t *store_write(struct store *s, size_t *len)
{
    FUZZ_CHECK(ftruncate(memfd, 0) == 0 && lseek(memfd, 0, SEEK_SET) == 0);
    FUZZ_CHECK(km_hist_write_fd(s->h, memfd) == 0);
    off_t end = lseek(memfd, 0, SEEK_END);
    FUZZ_CHECK(end >= 0);
    uint8_t *b = malloc((size_t)end + 1);
    FUZZ_CHECK(b != NULL);
    FUZZ_CHECK(pread(memfd, b, (size_t)end, 0) == end);
    *len = (size_t)end;
    return b;
}

static size_t series_with_history(struct store *s)
{
    struct km_history_stats st;
    km_history_get_stats(s->h, &st);
    return st.series;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Mode 1: the magic, version and every CRC the structure allows, set right. */
static void fix_crcs(uint8_t *b, size_t n)
{
    if (n < 16)
        return;
    memcpy(b, "KMHIST\0\1", 8);
    put32(b + 8, 1);
    size_t pos = 16 + (size_t)(le32(b + 12) % 5) * 28;
    while (pos + 4 <= n) {
        uint32_t len = le32(b + pos);
        if (len == 0xffffffffu) {
            if (pos + 16 <= n)
                put32(b + pos + 12,
                      (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)(pos + 12)));
            return;
        }
        if (len > n - pos - 4 || n - pos - 4 - len < 4)
            return;
        put32(b + pos + 4 + len, (uint32_t)crc32(crc32(0L, Z_NULL, 0), b + pos + 4, len));
        pos += 8 + len;
    }
}

/* Mode 2: a store driven by the bytes, written. */
static uint8_t *generate(const uint8_t *p, size_t n, size_t *len)
{
    struct store s;
    store_new(&s);
    double t = 1.7e9;
    for (size_t i = 0; i + 3 <= n && i < 3 * 100; i += 3) { /* 100 samples at most */
        char name[16];
        snprintf(name, sizeof name, "fz_%u", p[i] & 7);
        struct km_series *se = km_series_get(s.reg, name, "fuzz", KM_SERIES_GAUGE,
                                             p[i] & 8 ? "host=\"a\"" : "");
        if (se) {
            double v = p[i + 1] & 0x80 ? (double)(int8_t)p[i + 1] : p[i + 1] / 7.0;
            km_series_set(se, v, (int64_t)(t * 1e6));
        }
        km_history_sample(s.h, t);
        t += 1 + p[i + 2] % 40;
    }
    uint8_t *b = store_write(&s, len);
    store_free(&s);
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[320];
    size_t n, n2, n3;
    uint8_t *file;

    if (size < 1)
        return 0;
    if (memfd < 0) {
        km_log_set_level(KM_LOG_ERROR); /* no line per refused file */
        memfd = memfd_create("fuzz_history", MFD_CLOEXEC);
        FUZZ_CHECK(memfd >= 0);
    }
    int mode = data[0] % 3;
    if (mode == 2) {
        file = generate(data + 1, size - 1, &n);
        /* FUZZ_HISTORY_DUMP=PATH: that file, as a mode 0 seed (to make seeds) */
        const char *dump = getenv("FUZZ_HISTORY_DUMP");
        FILE *f = dump ? fopen(dump, "wb") : NULL;
        if (f) {
            fputc(0, f);
            fwrite(file, 1, n, f);
            fclose(f);
        }
    } else {
        n = size - 1;
        file = malloc(n + 1);
        FUZZ_CHECK(file != NULL);
        memcpy(file, data + 1, n);
        if (mode == 1)
            fix_crcs(file, n);
    }

    struct store a;
    store_new(&a);
    int rc = km_hist_load_buf(a.h, file, n, why, sizeof why);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (mode == 2)
        FUZZ_CHECKF(rc == 0, "the writer's own file refused: %s", why);
    if (rc < 0) {
        FUZZ_CHECK(series_with_history(&a) == 0 && km_series_count(a.reg) == 0);
        const char *at = strstr(why, " at byte ");
        FUZZ_CHECKF(at != NULL, "%s", why);
        FUZZ_CHECKF(strtoull(at + 9, NULL, 10) <= n, "%s (of %zu)", why, n);
        store_free(&a);
        free(file);
        return 0;
    }
    /* accepted: written back, read again, written again */
    size_t loaded = series_with_history(&a);
    uint8_t *w1 = store_write(&a, &n2);
    if (mode == 2)
        FUZZ_CHECKF(n2 == n && memcmp(w1, file, n) == 0,
                    "the writer's file read and written back differs (%zu, %zu bytes)", n,
                    n2);
    struct store b;
    store_new(&b);
    rc = km_hist_load_buf(b.h, w1, n2, why, sizeof why);
    FUZZ_CHECKF(rc == 0, "a file written from an accepted one is refused: %s", why);
    FUZZ_CHECK(series_with_history(&b) == loaded);
    uint8_t *w2 = store_write(&b, &n3);
    FUZZ_CHECKF(n3 == n2 && memcmp(w1, w2, n2) == 0, "written again: %zu bytes, then %zu",
                n2, n3);
    free(w1);
    free(w2);
    store_free(&b);
    store_free(&a);
    free(file);
    return 0;
}
