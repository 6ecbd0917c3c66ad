/*
 * fuzz_docker_stats.c - what Docker's Engine API sends docker_stats
 * (plugins/docker_stats.c), run through the real plugin on a fake core
 * (fuzz_host.h): the containers list (GET /containers/json), the stats
 * samples (GET /containers/ID/stats) and the /events stream.
 *
 * FUZZ_SOURCES: plugins/docker_stats.c
 *
 * Input: parts separated by the byte 0x1e; a part's first byte says what
 * it is, the rest is the body:
 *   'L'  the answer (200) to the containers list (a poll is started first
 *        when none is under way)
 *   'S'  the answer (200) to the first stats request in flight
 *   'E'  bytes of the /events stream (split into lines by the plugin)
 *   'F'  the first request in flight fails: HTTP 500 when the body is
 *        empty, else a transport error
 *   else the timers run (the next poll, a repoll an event asked for)
 * The first byte of the input picks the selection: containers = "*", the
 * default names list, or a label.
 *
 * Properties, for every message the plugin publishes on `containers`:
 *   - it is an object the topic's schema accepts (never refused, never a
 *     failed json_pack: a NaN or an infinity makes json_real NULL);
 *   - every figure is null or a number >= 0 (Docker's counters cannot be
 *     negative; a figure that cannot be computed is null); a running
 *     container's CPU % is at most 100 x its CPU count (online_cpus, else
 *     the length of percpu_usage, of the samples this input gave it);
 *     container_count is the length of the list;
 *   - no watched container is lost: with "*" or a names list, the list
 *     holds one entry per watched container of the last good
 *     /containers/json (at most 256) plus one per configured name it
 *     lacked; the error shape ("error") has an empty list;
 *   - nothing crashes or leaks; a /events line is taken (a poll) or
 *     ignored.
 */
#include <math.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "fuzz_host.h"

extern const struct km_plugin km_plugin_descriptor;

#define SEP      0x1e
#define MAX_SEEN 64

/* The default names list of the plugin's `containers` key. */
static const char *const default_names[] = {"kato", "kato-clickhouse", "kato-qdrant",
                                            "kato-redis"};

/* The CPU count of each sample given, by the id in its url (12-byte prefix). */
static struct {
    char id[13];
    double ncpu;
} seen[MAX_SEEN];
static int n_seen;
static int mode;          /* 0: "*", 1: default names, 2: label */
static json_t *last_list; /* the last good /containers/json answer (owned) */

static double sample_ncpu(json_t *st)
{
    json_t *cs = json_object_get(st, "cpu_stats");
    json_t *on = json_object_get(cs, "online_cpus");
    double n = json_is_number(on) ? json_number_value(on) : 0;
    if (n <= 0)
        n = (double)json_array_size(
            json_object_get(json_object_get(cs, "cpu_usage"), "percpu_usage"));
    return n;
}

static void note_sample(const char *url, const char *body, size_t len)
{
    const char *p = strstr(url, "/containers/"), *end = NULL;
    json_t *st = json_loadb(body, len, 0, NULL);
    /* the id is what lies before the last "/stats?" (it may hold '/') */
    for (const char *q = p; q && (q = strstr(q, "/stats?stream=")); q++)
        end = q;
    if (p && end && n_seen < MAX_SEEN) {
        p += strlen("/containers/");
        size_t n = (size_t)(end - p);
        if (n > 12) /* the short id the plugin publishes: whole characters */
            for (n = 12; n > 0 && (p[n] & 0xC0) == 0x80; n--)
                ;
        snprintf(seen[n_seen].id, sizeof seen[n_seen].id, "%.*s", (int)n, p);
        seen[n_seen++].ncpu = sample_ncpu(st);
    }
    json_decref(st);
}

static double ncpu_of(const char *id)
{
    double n = 0;
    for (int i = 0; id && i < n_seen; i++)
        if (strcmp(seen[i].id, id) == 0 && seen[i].ncpu > n)
            n = seen[i].ncpu;
    return n;
}

static int is_default_name(const char *name)
{
    for (size_t i = 0; i < sizeof default_names / sizeof default_names[0]; i++)
        if (strcmp(name, default_names[i]) == 0)
            return 1;
    return 0;
}

/* Entries the plugin must list for last_list (mode 0 and 1), as documented:
   each container with a name, an id and a state that is watched, at most
   256, then each configured name not among them. */
static size_t expected_entries(void)
{
    size_t i, n = 0, found = 0;
    json_t *c;
    char hit[4] = {0};

    json_array_foreach(last_list, i, c)
    {
        const char *name =
            json_string_value(json_array_get(json_object_get(c, "Names"), 0));
        if (!name || !json_is_string(json_object_get(c, "Id")) ||
            !json_is_string(json_object_get(c, "State")) || n == 256)
            continue;
        if (name[0] == '/')
            name++;
        if (mode == 1 && !is_default_name(name))
            continue;
        n++;
        for (size_t k = 0; mode == 1 && k < 4; k++)
            if (strcmp(name, default_names[k]) == 0 && !hit[k]) {
                hit[k] = 1;
                found++;
            }
    }
    if (mode == 1)
        n += (4 - found) < 256 - n ? 4 - found : 256 - n;
    return n;
}

/* null, or a number >= 0 */
static void check_figure(json_t *v, const char *what)
{
    FUZZ_CHECKF(json_is_null(v) || (json_is_number(v) && json_number_value(v) >= 0),
                "%s is not null nor a number >= 0", what);
    if (json_is_real(v))
        FUZZ_CHECKF(isfinite(json_real_value(v)), "%s not finite", what);
}

static void check_block(json_t *c, const char *block)
{
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(c, block), k, v) check_figure(v, k);
}

static void on_publish(struct fh_topic *t, json_t *m)
{
    size_t i;
    json_t *c;
    json_t *list = json_object_get(m, "containers");

    FUZZ_CHECK(strcmp(t->def.name, "containers") == 0);
    if (json_is_string(json_object_get(m, "error"))) {
        FUZZ_CHECK(json_array_size(list) == 0);
        FUZZ_CHECK(
            json_is_false(json_object_get(json_object_get(m, "_source"), "healthy")));
        return;
    }
    json_array_foreach(list, i, c)
    {
        json_t *cpu = json_object_get(c, "cpu");
        check_figure(cpu, "cpu");
        check_block(c, "memory");
        check_block(c, "network");
        check_block(c, "block_io");
        check_figure(json_object_get(c, "pids"), "pids");
        if (json_is_number(cpu) && json_is_true(json_object_get(c, "running"))) {
            double n = ncpu_of(json_string_value(json_object_get(c, "id")));
            FUZZ_CHECKF(json_number_value(cpu) <= 100 * n + 1e-9,
                        "cpu %g %% with %g CPUs", json_number_value(cpu), n);
        }
    }
    json_t *agg = json_object_get(m, "aggregated");
    check_figure(json_object_get(agg, "total_cpu_percent"), "total_cpu_percent");
    check_figure(json_object_get(agg, "total_memory_mb"), "total_memory_mb");
    check_figure(json_object_get(agg, "total_memory_limit_mb"), "total_memory_limit_mb");
    check_figure(json_object_get(agg, "total_memory_percent"), "total_memory_percent");
    FUZZ_CHECK(json_integer_value(json_object_get(agg, "container_count")) ==
               (json_int_t)json_array_size(list));
    if (mode != 2 && last_list)
        FUZZ_CHECKF(json_array_size(list) == expected_entries(),
                    "%zu containers listed, %zu watched", json_array_size(list),
                    expected_entries());
}

/* The first request in flight that is not the /events stream. */
static struct fh_req *first_request(void)
{
    for (int i = 0; i < fh.n_reqs; i++)
        if (fh.reqs[i].cb && !fh.reqs[i].on_data)
            return &fh.reqs[i];
    return NULL;
}

/* The containers list in flight: its url holds "/containers/json", and is
   no stats request (a container's id, from the input, may hold that text). */
static struct fh_req *list_request(void)
{
    for (int i = 0; i < fh.n_reqs; i++)
        if (fh.reqs[i].cb && strstr(fh.reqs[i].url, "/containers/json") &&
            !strstr(fh.reqs[i].url, "/stats?stream="))
            return &fh.reqs[i];
    return NULL;
}

static void part(const uint8_t *p, size_t n)
{
    uint8_t tag = n ? p[0] : 0;
    const char *body = n ? (const char *)p + 1 : "";
    size_t len = n ? n - 1 : 0;
    struct fh_req *r;

    switch (tag) {
    case 'L':
        if (!list_request())
            fh_timers_fire();
        if ((r = list_request())) {
            json_t *l = json_loadb(body, len, 0, NULL);
            if (json_is_array(l)) {
                json_decref(last_list);
                last_list = l;
            } else {
                json_decref(l);
            }
            fh_http_answer(r, 200, body, len, NULL);
        }
        break;
    case 'S':
        if ((r = fh_req_find("/stats"))) {
            note_sample(r->url, body, len);
            fh_http_answer(r, 200, body, len, NULL);
        }
        break;
    case 'E':
        if ((r = fh_req_find("/events")) && r->on_data)
            r->on_data(body, len, r->arg);
        break;
    case 'F':
        if ((r = first_request()))
            fh_http_answer(r, len ? 0 : 500, "", 0, len ? "timed out" : NULL);
        break;
    default:
        fh_timers_fire();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fh_reset(&km_plugin_descriptor);
    fh.on_publish = on_publish;
    n_seen = 0;
    mode = size ? data[0] % 3 : 0;
    if (mode == 0)
        fh_set("containers", "*");
    else if (mode == 2)
        fh_set("label", "com.docker.compose.project=kato");
    FUZZ_CHECK(km_plugin_descriptor.init(FH_CTX, &fh_host) == 0);
    fh_timers_fire(); /* the first poll */
    size_t start = size ? 1 : 0;
    for (size_t i = start; i <= size; i++)
        if (i == size || data[i] == SEP) {
            part(data + start, i - start);
            start = i + 1;
        }
    FUZZ_CHECKF(fh_topic("containers")->refused == 0, "refused: %s",
                fh_topic("containers")->err);
    FUZZ_CHECK(fh.invalid == 0);
    km_plugin_descriptor.shutdown(FH_CTX);
    json_decref(last_list);
    last_list = NULL;
    fh_reset(&km_plugin_descriptor);
    return 0;
}
