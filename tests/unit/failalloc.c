/*
 * failalloc.c - see failalloc.h. The wrappers of -Wl,--wrap=... and the
 * tracker of outstanding blocks.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "failalloc.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void __real_free(void *p);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
void __wrap_free(void *p);

/* The counter and the failure plan. */
static unsigned long calls;    /* allocation calls since fa_arm */
static unsigned long fail_at;  /* the call number that fails; 0 none */
static int sticky;             /* every call after fail_at fails too */
static unsigned long failures; /* calls failed since fa_arm */
static int suspended;          /* > 0: the test's own allocations */
static int shielded;           /* > 0: tracked, never counted nor failed */

/*
 * The tracker: an open-addressing set of live block addresses (linear
 * probing, deletion by backward shift so no tombstones pile up). Its own
 * table comes from __real_malloc and is never tracked.
 */
static uintptr_t *set; /* slots; 0 is empty */
static size_t set_cap; /* slots, a power of two */
static long set_n;     /* addresses held = outstanding blocks */

static size_t slot_of(uintptr_t k)
{
    k ^= k >> 17;
    k *= (uintptr_t)0x9E3779B97F4A7C15ull;
    return (size_t)(k >> 7) & (set_cap - 1);
}

static void set_put(uintptr_t k);

static void set_grow(void)
{
    uintptr_t *old = set;
    size_t oldcap = set_cap;

    set_cap = oldcap ? oldcap * 2 : 4096;
    set = __real_calloc(set_cap, sizeof *set);
    if (!set) {
        /* the tracker cannot run without its table: a test-harness failure,
           not katomon's */
        fputs("failalloc: out of memory for the tracker\n", stderr);
        abort();
    }
    set_n = 0;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i])
            set_put(old[i]);
    __real_free(old);
}

static void set_put(uintptr_t k)
{
    if ((size_t)(set_n + 1) * 2 > set_cap)
        set_grow();
    size_t i = slot_of(k);
    while (set[i] && set[i] != k)
        i = (i + 1) & (set_cap - 1);
    if (!set[i]) {
        set[i] = k;
        set_n++;
    }
}

/* Removes k; 1 if it was there. */
static int set_del(uintptr_t k)
{
    if (!set_cap)
        return 0;
    size_t i = slot_of(k);
    while (set[i] && set[i] != k)
        i = (i + 1) & (set_cap - 1);
    if (!set[i])
        return 0;
    set[i] = 0;
    set_n--;
    /* shift back the run after i so every key stays reachable */
    for (size_t j = (i + 1) & (set_cap - 1); set[j]; j = (j + 1) & (set_cap - 1)) {
        size_t h = slot_of(set[j]);
        /* may set[j] move to i? yes unless its home lies in (i, j] */
        if ((j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j))) {
            set[i] = set[j];
            set[j] = 0;
            i = j;
        }
    }
    return 1;
}

/* Counts one call; 1 when it must fail. */
static int must_fail(void)
{
    if (suspended || shielded)
        return 0;
    calls++;
    if (fail_at && (calls == fail_at || (sticky && calls > fail_at))) {
        failures++;
        return 1;
    }
    return 0;
}

static void *track(void *p)
{
    if (p && !suspended)
        set_put((uintptr_t)p);
    return p;
}

void *__wrap_malloc(size_t n)
{
    return must_fail() ? NULL : track(__real_malloc(n));
}

void *__wrap_calloc(size_t n, size_t m)
{
    return must_fail() ? NULL : track(__real_calloc(n, m));
}

void *__wrap_realloc(void *p, size_t n)
{
    if (!p)
        return __wrap_malloc(n);
    if (must_fail())
        return NULL; /* p untouched, as realloc's failure */
    int known = set_del((uintptr_t)p);
    void *q = __real_realloc(p, n);
    if (!q) {
        if (known)
            set_put((uintptr_t)p);
        return NULL;
    }
    /* a block unknown before (allocated by libc itself) stays unknown */
    if (known)
        set_put((uintptr_t)q);
    return q;
}

char *__wrap_strdup(const char *s)
{
    return must_fail() ? NULL : track(__real_strdup(s));
}

char *__wrap_strndup(const char *s, size_t n)
{
    return must_fail() ? NULL : track(__real_strndup(s, n));
}

void __wrap_free(void *p)
{
    if (p)
        set_del((uintptr_t)p);
    __real_free(p);
}

void *fa_malloc(size_t n)
{
    return __wrap_malloc(n);
}

void *fa_realloc(void *p, size_t n)
{
    return __wrap_realloc(p, n);
}

void fa_free(void *p)
{
    __wrap_free(p);
}

/*
 * libevent's blocks: tracked (a leaked bufferevent or evbuffer chain shows
 * in fa_outstanding) but never counted nor failed (shielded). libevent 2.1 does not
 * survive its own allocation failures: bufferevent_setwatermark, for one,
 * uses the NULL that evbuffer_add_cb returned (evbuffer_cb_set_flags
 * crashes). That is libevent's bug, not katomon's; failing its calls
 * would only find it again.
 */
static void *fa_ev_malloc(size_t n)
{
    shielded++;
    void *p = __wrap_malloc(n);
    shielded--;
    return p;
}

static void *fa_ev_realloc(void *p, size_t n)
{
    shielded++;
    void *q = __wrap_realloc(p, n);
    shielded--;
    return q;
}

/*
 * Jansson's parser: the same, and for a like reason. Its lexer ignores a
 * failure to grow its token buffer (lex_save drops strbuffer_append_byte's
 * -1; Jansson 2.14, and its master of 2026-07), and lex_scan_string then
 * reads past the buffer looking for the closing quote (ASan: a
 * heap-buffer-overflow in lex_scan_string). katomon cannot fix that from
 * outside: json_loadb and json_loads run shielded.
 */
json_t *__real_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e);
json_t *__wrap_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e);
json_t *__real_json_loads(const char *s, size_t flags, json_error_t *e);
json_t *__wrap_json_loads(const char *s, size_t flags, json_error_t *e);

json_t *__wrap_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e)
{
    shielded++;
    json_t *j = __real_json_loadb(buf, len, flags, e);
    shielded--;
    return j;
}

json_t *__wrap_json_loads(const char *s, size_t flags, json_error_t *e)
{
    shielded++;
    json_t *j = __real_json_loads(s, flags, e);
    shielded--;
    return j;
}

void fa_init(void)
{
    json_set_alloc_funcs(fa_malloc, fa_free);
    event_set_mem_functions(fa_ev_malloc, fa_ev_realloc, fa_free);
}

void fa_arm(unsigned long n, int st)
{
    calls = 0;
    failures = 0;
    fail_at = n;
    sticky = st;
}

void fa_disarm(void)
{
    fail_at = 0;
    sticky = 0;
}

unsigned long fa_calls(void)
{
    return calls;
}

unsigned long fa_failures(void)
{
    return failures;
}

long fa_outstanding(void)
{
    return set_n;
}

void fa_suspend(int delta)
{
    suspended += delta;
}
