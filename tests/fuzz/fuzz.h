/*
 * fuzz.h - what every harness of tests/fuzz/ shares (see README.md there).
 *
 * A harness is one file, tests/fuzz/fuzz_NAME.c, defining
 * LLVMFuzzerTestOneInput. It is built twice from the same source: by
 * `make fuzz` with clang and libFuzzer (tests/fuzz/run.sh), and by `make
 * check` with the project's compiler and tests/fuzz/replay.c as main(),
 * which replays tests/fuzz/corpus/NAME/ and tests/fuzz/regress/NAME/.
 *
 * A harness checks properties of what the code under test does with the
 * input, not only that it survives it: FUZZ_CHECK(cond) prints the
 * condition, the harness's file:line and a message, then abort()s, which
 * libFuzzer reports as a crash (and saves the input) and which fails the
 * replay test.
 */
#ifndef KM_FUZZ_H
#define KM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The entry point libFuzzer calls once per input (data borrowed for the
   call). Returns 0 (libFuzzer's convention: -1 keeps the input out of the
   corpus). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property that must hold for every input. */
#define FUZZ_CHECK(cond)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__,        \
                    #cond);                                                              \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* The same with a printf-style explanation. */
#define FUZZ_CHECKF(cond, ...)                                                           \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: property violated: %s: ", __FILE__, __LINE__,        \
                    #cond);                                                              \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#endif /* KM_FUZZ_H */
