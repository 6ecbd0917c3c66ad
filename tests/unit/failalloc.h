/*
 * failalloc.h - a counting allocator that fails on demand, for
 * tests/unit/check_alloc_fail.c (issue 17, point 5; the technique of
 * jansson's and sqlite's malloc-failure tests).
 *
 * The test binary is linked with -Wl,--wrap=malloc,--wrap=calloc,
 * --wrap=realloc,--wrap=strdup,--wrap=strndup,--wrap=free: every call made
 * by an object linked into it (katomon's core objects and the test) goes
 * through __wrap_*, which counts the call, may fail it, and otherwise calls
 * the real function (__real_*: the sanitizer's when built with
 * --enable-sanitizers, so ASan and LSan still see every block). Calls made
 * inside shared libraries are not wrapped: fa_init() routes Jansson's and
 * libevent's allocations here through their hooks.
 *
 * Outstanding blocks are tracked by address (a hash set), so a block that
 * libc allocated on its own (getline, realpath) and katomon frees is not
 * miscounted: fa_outstanding() is an exact leak count of what went through
 * here, independent of LSan.
 *
 * Single-threaded, like katomon's event loop.
 */
#ifndef KM_FAILALLOC_H
#define KM_FAILALLOC_H

#include <stddef.h>

/* Routes Jansson (json_set_alloc_funcs) and libevent
   (event_set_mem_functions) through the wrapper. Call first thing in main.
   libevent's allocations and those inside json_loadb/json_loads (the
   binary is linked with --wrap=json_loadb,--wrap=json_loads too) are
   tracked but never counted nor failed: both libraries crash on some of
   their own allocation failures (see failalloc.c). */
void fa_init(void);

/*
 * Starts counting from 0: calls made from now are numbered 1, 2, ...; the
 * call numbered n fails (n 0: none does), and when `sticky`, every later
 * one too (until fa_disarm).
 */
void fa_arm(unsigned long n, int sticky);
/* No call fails from now on (the count goes on). */
void fa_disarm(void);
/* Allocation calls counted since the last fa_arm. */
unsigned long fa_calls(void);
/* Calls failed since the last fa_arm. */
unsigned long fa_failures(void);
/* Blocks allocated through the wrapper and not yet freed. */
long fa_outstanding(void);
/*
 * While > 0 (nested: +1/-1), allocations are neither counted, failed nor
 * tracked: for what the test itself builds (request bodies it hands over,
 * its own bookkeeping). A block so made and freed later is simply unknown
 * to the tracker.
 */
void fa_suspend(int delta);

/* The allocator itself, for hooks (same as malloc & co. from wrapped code). */
void *fa_malloc(size_t n);
void *fa_realloc(void *p, size_t n);
void fa_free(void *p);

#endif /* KM_FAILALLOC_H */
