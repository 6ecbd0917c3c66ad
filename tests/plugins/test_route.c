/*
 * test_route.c - a second plugin with REST routes, for the route ranking
 * tests of tests/unit/check_rest (loaded after test_good).
 *
 * Serves GET /api/v1/test/deep/exact (exact: beats test_good's
 * /api/v1/test/deep/ prefix), GET /api/v1/test/deep/er/<anything> (a
 * longer prefix than test_good's) and DELETE /api/v1/test/<anything>.
 * Each answers {"route": "test_route:<which>", "path": P}. Its init fails
 * unless registering test_good's GET /api/v1/test/deep/ prefix again is
 * refused with KM_EEXIST (routes are unique across plugins).
 */
#include <katomon/plugin.h>

static const struct km_host *host; /* the core's interface */

static int on_route(const struct km_rest_call *call, json_t **reply, const char **detail,
                    void *arg)
{
    *reply = json_pack("{s:s, s:s}", "route", (const char *)arg, "path", call->path);
    return 200;
}

static int route_init(struct km_ctx *ctx, const struct km_host *h)
{
    host = h;
    if (host->rest_route(ctx, "GET", "/api/v1/test/deep/exact", on_route,
                         "test_route:exact") != KM_OK ||
        host->rest_route(ctx, "GET", "/api/v1/test/deep/er/*", on_route,
                         "test_route:longer") != KM_OK ||
        host->rest_route(ctx, "DELETE", "/api/v1/test/*", on_route,
                         "test_route:delete") != KM_OK) {
        host->log(ctx, KM_LOG_ERROR, "cannot add REST routes");
        return -1;
    }
    if (host->rest_route(ctx, "GET", "/api/v1/test/deep/*", on_route, "dup") !=
        KM_EEXIST) {
        host->log(ctx, KM_LOG_ERROR, "test_good's prefix route was not refused");
        return -1;
    }
    return 0;
}

KM_PLUGIN_DEFINE(.name = "test_route", .version = "1.0",
                 .description = "route ranking test: exact and prefix routes",
                 .init = route_init);
