/*
 * replay.c - main() for a harness built by `make check`: feeds every file
 * of the harness's seed corpus and regression inputs to
 * LLVMFuzzerTestOneInput, so every input that ever broke a property is
 * replayed by the ordinary build (and under --enable-sanitizers by its
 * sanitizers) in every stage of tests/run-all.
 *
 * The harness's NAME comes from the program's name (tests/fuzz/fuzz_NAME_replay,
 * maybe behind libtool's lt- prefix); the directories from $top_srcdir
 * (make check sets it; default "."): tests/fuzz/corpus/NAME/ and
 * tests/fuzz/regress/NAME/. A missing directory counts as empty; no input
 * at all fails (a wrong name or path would otherwise pass silently).
 *
 * With arguments, replays those files (or every file of those directories)
 * instead: `tests/fuzz/fuzz_http_request_replay crash-1234...` reproduces a
 * libFuzzer finding under gdb or valgrind without clang.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Reads path whole (malloc'd, *len bytes) and runs the harness on it.
   Returns 1 when it ran, 0 when the file could not be read. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 4096, len = 0, n;
    uint8_t *buf;

    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return 0;
    }
    buf = malloc(cap);
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *b = realloc(buf, cap *= 2);
            if (!b)
                free(buf);
            buf = b;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "replay: %s: out of memory\n", path);
        return 0;
    }
    /* an exact-size copy, so ASan sees a read past the input's end */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return 0;
    }
    memcpy(exact, buf, len);
    free(buf);
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays every regular file of dir (sorted, dot files skipped); a missing
   dir is empty. Returns the number replayed, -1 on a read error. */
static int replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int done = 0;

    if (!d)
        return errno == ENOENT ? 0 : -1;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof *names);
            if (!nn)
                break;
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (names[i] && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
            strcmp(names[i], "README.md") != 0) {
            if (!replay_file(path))
                done = -1;
            else if (done >= 0)
                done++;
        }
        free(names[i]);
    }
    free(names);
    return done;
}

/* NAME of tests/fuzz/fuzz_NAME_replay from argv[0], into buf. */
static int harness_name(const char *argv0, char *buf, size_t len)
{
    const char *base = strrchr(argv0, '/');
    base = base ? base + 1 : argv0;
    if (strncmp(base, "lt-", 3) == 0)
        base += 3;
    if (strncmp(base, "fuzz_", 5) == 0)
        base += 5;
    size_t n = strlen(base);
    const char *suffix = "_replay";
    if (n > strlen(suffix) && strcmp(base + n - strlen(suffix), suffix) == 0)
        n -= strlen(suffix);
    if (n == 0 || n >= len)
        return -1;
    memcpy(buf, base, n);
    buf[n] = '\0';
    return 0;
}

int main(int argc, char **argv)
{
    const char *top = getenv("top_srcdir");
    char name[128], dir[4096];
    int total = 0;

    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            struct stat st;
            int isdir = stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode);
            int r = isdir ? replay_dir(argv[i]) : replay_file(argv[i]);
            if (r < 0 || (r == 0 && !isdir))
                return 1;
        }
        return 0;
    }
    if (harness_name(argv[0], name, sizeof name) < 0) {
        fprintf(stderr, "replay: cannot tell the harness from %s\n", argv[0]);
        return 1;
    }
    if (!top || !*top)
        top = ".";
    static const char *const kinds[] = {"corpus", "regress"};
    for (size_t k = 0; k < 2; k++) {
        snprintf(dir, sizeof dir, "%s/tests/fuzz/%s/%s", top, kinds[k], name);
        int r = replay_dir(dir);
        if (r < 0) {
            fprintf(stderr, "replay: %s: cannot read it\n", dir);
            return 1;
        }
        fprintf(stderr, "replay: %s: %d inputs\n", dir, r);
        total += r;
    }
    if (total == 0) {
        fprintf(stderr, "replay: no input for harness %s under %s/tests/fuzz\n", name,
                top);
        return 1;
    }
    printf("replay: %s: %d inputs, every property held\n", name, total);
    return 0;
}
