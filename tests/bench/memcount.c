/*
 * memcount.c - LD_PRELOAD shim for the benchmark's copy count.
 *
 * Counts user-space copies the server makes through memcpy, memmove and
 * mempcpy (any caller that goes through the PLT: the daemon, libevent,
 * jansson, wslay), split into small (< 512 bytes) and large ones, in a
 * small file mapped shared (MEMCOUNT_FILE), which the load client reads
 * before and after its window (--memcount FILE). A server that copied
 * each 2 KB message once per client would show about one large copy per
 * delivered message; a shared-frame server shows about 1/N.
 *
 * Copies the compiler inlines (fixed small sizes) are not seen; a
 * per-message copy of a 2 KB payload is never one of those.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

struct memcount {
    uint64_t large_calls; /* copies of >= 512 bytes */
    uint64_t large_bytes;
    uint64_t small_calls;
    uint64_t small_bytes;
};

static struct memcount local;
static struct memcount *mc = &local;
static void *(*real_memcpy)(void *, const void *, size_t);
static void *(*real_memmove)(void *, const void *, size_t);
static void *(*real_mempcpy)(void *, const void *, size_t);

static void *slow_copy(void *d, const void *s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;
    if (dp < sp)
        for (size_t i = 0; i < n; i++)
            dp[i] = sp[i];
    else
        for (size_t i = n; i-- > 0;)
            dp[i] = sp[i];
    return d;
}

__attribute__((constructor)) static void memcount_init(void)
{
    const char *path = getenv("MEMCOUNT_FILE");
    real_memcpy = dlsym(RTLD_NEXT, "memcpy");
    real_memmove = dlsym(RTLD_NEXT, "memmove");
    real_mempcpy = dlsym(RTLD_NEXT, "mempcpy");
    if (path) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0 && ftruncate(fd, sizeof *mc) == 0) {
            void *p = mmap(NULL, sizeof *mc, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (p != MAP_FAILED)
                mc = p;
        }
        if (fd >= 0)
            close(fd);
    }
}

static inline void count(size_t n)
{
    if (n >= 512) {
        mc->large_calls++;
        mc->large_bytes += n;
    } else {
        mc->small_calls++;
        mc->small_bytes += n;
    }
}

void *memcpy(void *d, const void *s, size_t n)
{
    count(n);
    return real_memcpy ? real_memcpy(d, s, n) : slow_copy(d, s, n);
}

void *memmove(void *d, const void *s, size_t n)
{
    count(n);
    return real_memmove ? real_memmove(d, s, n) : slow_copy(d, s, n);
}

void *mempcpy(void *d, const void *s, size_t n)
{
    count(n);
    if (real_mempcpy)
        return real_mempcpy(d, s, n);
    return (char *)slow_copy(d, s, n) + n;
}
