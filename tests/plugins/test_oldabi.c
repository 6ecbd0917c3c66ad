/*
 * test_oldabi.c - a plugin built before `kinds` and `check` were appended
 * to struct km_plugin: its descriptor symbol has the eight members of
 * then, and what follows it in memory is not a descriptor (here: pointers
 * that crash when read as .kinds or .check). The loader must take the
 * symbol's size, see neither member, and load it like any other.
 *
 * The descriptor is written out, as such a plugin would have it, and the
 * symbol is placed with its old size by hand (GNU as, ELF).
 */
#include <stddef.h>
#include <stdint.h>

#include <katomon/plugin.h>

/* struct km_plugin as ABI 1 first published it. */
struct old_plugin {
    uint32_t abi;                     /* KM_PLUGIN_ABI */
    const char *name;                 /* as in struct km_plugin */
    const char *version;              /* ditto */
    const char *description;          /* ditto */
    const struct km_conf_key *config; /* ditto */
    int (*init)(struct km_ctx *ctx, const struct km_host *host); /* ditto */
    int (*reload)(struct km_ctx *ctx);                           /* ditto */
    void (*shutdown)(struct km_ctx *ctx);                        /* ditto */
};

#if __SIZEOF_POINTER__ == 8
#define OLD_SIZE "64"
#else
#define OLD_SIZE "32"
#endif
_Static_assert(sizeof(struct old_plugin) == offsetof(struct km_plugin, kinds),
               "the old descriptor is the new one's first members");

static int oldabi_init(struct km_ctx *ctx, const struct km_host *host)
{
    host->log(ctx, KM_LOG_INFO, "an old descriptor, running");
    return 0;
}

/* The old descriptor, then bytes a newer loader must not take for one. */
static const struct {
    struct old_plugin desc; /* what the symbol covers */
    const void *junk[2];    /* where a new descriptor has kinds and check */
} blob __asm__("km_test_oldabi_blob") __attribute__((used)) = {
    {KM_PLUGIN_ABI, "test_oldabi", "1.0", "loader test: a descriptor from before .check",
     NULL, oldabi_init, NULL, NULL},
    {(const void *)1, (const void *)1},
};

__asm__(".globl " KM_PLUGIN_SYMBOL "\n"
        ".type " KM_PLUGIN_SYMBOL ", @object\n"
        ".set " KM_PLUGIN_SYMBOL ", km_test_oldabi_blob\n"
        ".size " KM_PLUGIN_SYMBOL ", " OLD_SIZE "\n");
