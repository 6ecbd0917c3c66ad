/*
 * test_badabi.c - a plugin "built" for another ABI: the loader must refuse
 * it from the .abi field alone, without reading (or calling) anything else.
 */
#include <stddef.h>
#include <katomon/plugin.h>

static int badabi_init(struct km_ctx *ctx, const struct km_host *host)
{
    /* Never reached: the loader stops at the ABI check. */
    return -1;
}

/* Written out instead of KM_PLUGIN_DEFINE, which always sets the real ABI. */
KM_EXPORT const struct km_plugin km_plugin_descriptor = {
    .abi = KM_PLUGIN_ABI + 100,
    .name = "test_badabi",
    .version = "1.0",
    .description = "loader test: wrong ABI",
    .init = badabi_init,
};
