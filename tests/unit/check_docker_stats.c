/*
 * check_docker_stats.c - the docker_stats plugin against a fake Docker
 * Engine on a unix socket, serving the real API answers recorded in
 * tests/fixtures/docker/ (see tests/docker/README.md).
 *
 * Each test builds a real struct km_core (event loop, bus, config file) as
 * the daemon does, loads docker_stats.so from PLUGIN_BUILD_DIR, and runs
 * the loop. The fake engine lives on the same loop: it answers
 * GET /v1.41/containers/json, /containers/ID/stats (optionally after a
 * delay, to see the requests run concurrently) and keeps /events open so a
 * test can push an event line into it. It records every request.
 *
 * What is checked: the figures of every fixture (CPU % with online_cpus,
 * memory used without the page cache, network, block I/O, pids) against
 * the table in tests/docker/README.md; cgroup v1 and v2 shapes; one-shot
 * samples using our previous sample; a stopped container and one that
 * stopped while sampled; a watched name that does not exist; Docker down
 * or answering errors (the original's error shape, backoff, recovery); TCP;
 * events triggering a poll at once; label and "*" selection; concurrency;
 * a die event publishing the container down at once, and the polls after
 * it not flipping it back (issue 17).
 *
 * Issue 16 (a running container shown at 0 % and 0 B under load): a figure
 * that cannot be computed is null, never 0, and is no sample in the series
 * registry: a first sample without a previous one (empty precpu_stats), a
 * system counter that did not advance, a container counter that went back,
 * memory_stats missing, a stats request that timed out, a partial answer.
 */
#define _GNU_SOURCE /* nftw */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "core.h"
#include "http_client.h"
#include "loader.h"
#include "log.h"
#include "series.h"

#define ID_KATO   "7cbf5507febd"
#define ID_REDIS  "eab67f8ce57e"
#define ID_HEALTH "eaf8965d305a"
#define ID_SICK   "76e38d6ecfcb"
#define ID_IO     "7463f5539ba7"
#define MAX_REQS  512
#define MAX_CONNS 128
#define MAX_STATS 16

/* ---- the daemon side ------------------------------------------------------ */

static struct km_core core;
static char tmpdir[256];
static char sock_path[100];
static const char *build_dir;
static const char *fixtures;

static void quiet(enum km_log_level level, const char *line, void *arg)
{
    if (getenv("CHECK_VERBOSE"))
        fprintf(stderr, "log: %s\n", line);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the fake engine ------------------------------------------------------- */

struct fconn {
    struct bufferevent *bev; /* NULL once closed */
    int events;              /* the /events stream */
    int pending;             /* a delayed answer is due */
    int in_stats;            /* counted in fk.inflight */
    int answered;            /* an answer was written: close once it drained */
};

struct fk_stats {
    char id[13]; /* id prefix */
    char *body;  /* answer (owned) */
    int status;  /* HTTP status */
};

static struct {
    struct evconnlistener *lst;
    char *list_body; /* /containers/json answer (owned) */
    int list_status;
    struct fk_stats stats[MAX_STATS];
    int n_stats;
    int delay_ms;             /* stats answers wait this long */
    char reqs[MAX_REQS][300]; /* request targets, in order */
    double req_t[MAX_REQS];   /* when */
    int n_reqs;
    int inflight, max_inflight; /* stats requests being answered */
    struct fconn *conns[MAX_CONNS];
    int n_conns;
} fk;

static char *read_fixture(const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", fixtures, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open fixture %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static json_t *load_fixture(const char *name)
{
    char *text = read_fixture(name);
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    ck_assert_msg(j != NULL, "%s: %s", name, err.text);
    free(text);
    return j;
}

static void fk_set_list(const char *text, int status)
{
    free(fk.list_body);
    fk.list_body = strdup(text);
    fk.list_status = status;
}

static void fk_set_list_fixture(const char *name)
{
    free(fk.list_body);
    fk.list_body = read_fixture(name);
    fk.list_status = 200;
}

/* Stats answer for an id prefix; steals nothing (copies text). */
static void fk_set_stats_text(const char *id, const char *text, int status)
{
    int i;
    for (i = 0; i < fk.n_stats && strcmp(fk.stats[i].id, id) != 0; i++)
        ;
    ck_assert_int_lt(i, MAX_STATS);
    if (i == fk.n_stats)
        fk.n_stats++;
    snprintf(fk.stats[i].id, sizeof fk.stats[i].id, "%s", id);
    free(fk.stats[i].body);
    fk.stats[i].body = strdup(text);
    fk.stats[i].status = status;
}

static void fk_set_stats_json(const char *id, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    fk_set_stats_text(id, text, 200);
    free(text);
    json_decref(j);
}

static void fk_set_stats_fixture(const char *id, const char *name)
{
    char *text = read_fixture(name);
    fk_set_stats_text(id, text, 200);
    free(text);
}

static void fconn_close(struct fconn *c)
{
    if (c->bev)
        bufferevent_free(c->bev);
    c->bev = NULL;
    if (c->in_stats) {
        fk.inflight--;
        c->in_stats = 0;
    }
}

static void on_drained(struct bufferevent *bev, void *arg)
{
    struct fconn *c = arg;
    if (c->answered && !c->events && !c->pending &&
        evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        fconn_close(c);
}

static void on_fevent(struct bufferevent *bev, short what, void *arg)
{
    struct fconn *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        fconn_close(c);
}

static void respond(struct fconn *c, int status, const char *body)
{
    if (!c->bev)
        return;
    c->answered = 1;
    evbuffer_add_printf(
        bufferevent_get_output(c->bev),
        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nApi-Version: "
        "1.41\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
        status, status == 200 ? "OK" : "Error", strlen(body), body);
}

struct delayed {
    struct fconn *c;
    int idx; /* stats index, -1: 404 */
};

static void send_stats(struct fconn *c, int idx)
{
    if (idx < 0)
        respond(c, 404, "{\"message\":\"No such container\"}");
    else
        respond(c, fk.stats[idx].status, fk.stats[idx].body);
    if (c->in_stats) {
        fk.inflight--;
        c->in_stats = 0;
    }
}

static void on_delay(evutil_socket_t fd, short what, void *arg)
{
    struct delayed *d = arg;
    d->c->pending = 0;
    send_stats(d->c, d->idx);
    if (d->c->bev && evbuffer_get_length(bufferevent_get_output(d->c->bev)) == 0)
        fconn_close(d->c);
    free(d);
}

static void on_fread(struct bufferevent *bev, void *arg)
{
    struct fconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    char head[1024], target[300] = "";

    if (end.pos < 0 || c->events || c->pending)
        return;
    size_t n = evbuffer_remove(in, head,
                               end.pos + 4 < (ssize_t)sizeof head ? (size_t)end.pos + 4
                                                                  : sizeof head - 1);
    head[n] = '\0';
    sscanf(head, "GET %299s HTTP/1.1", target);
    if (fk.n_reqs < MAX_REQS) {
        snprintf(fk.reqs[fk.n_reqs], sizeof fk.reqs[0], "%s", target);
        fk.req_t[fk.n_reqs++] = now_s();
    }
    if (strncmp(target, "/v1.41/events", 13) == 0) {
        c->events = 1;
        evbuffer_add_printf(bufferevent_get_output(bev),
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n");
        return;
    }
    if (strncmp(target, "/v1.41/containers/json", 22) == 0) {
        respond(c, fk.list_status, fk.list_body ? fk.list_body : "[]");
        return;
    }
    const char *p = strstr(target, "/containers/");
    if (p && strstr(target, "/stats?")) {
        int idx = -1;
        for (int i = 0; i < fk.n_stats; i++)
            if (strncmp(p + 12, fk.stats[i].id, strlen(fk.stats[i].id)) == 0)
                idx = i;
        c->in_stats = 1;
        if (++fk.inflight > fk.max_inflight)
            fk.max_inflight = fk.inflight;
        if (fk.delay_ms > 0) {
            struct delayed *d = malloc(sizeof *d);
            struct timeval tv = {fk.delay_ms / 1000, (fk.delay_ms % 1000) * 1000};
            d->c = c;
            d->idx = idx;
            c->pending = 1;
            event_base_once(core.base, -1, EV_TIMEOUT, on_delay, d, &tv);
        } else {
            send_stats(c, idx);
        }
        return;
    }
    respond(c, 404, "{\"message\":\"page not found\"}");
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int len, void *arg)
{
    struct fconn *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_lt(fk.n_conns, MAX_CONNS);
    fk.conns[fk.n_conns++] = c;
    c->bev = bufferevent_socket_new(core.base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, on_fread, on_drained, on_fevent, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* The same engine on TCP 127.0.0.1; returns the port. */
static int fk_start_tcp(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fk.lst = evconnlistener_new_bind(core.base, on_accept, NULL,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
                                     (struct sockaddr *)&sa, sizeof sa);
    ck_assert_ptr_nonnull(fk.lst);
    ck_assert_int_eq(
        getsockname(evconnlistener_get_fd(fk.lst), (struct sockaddr *)&sa, &len), 0);
    return ntohs(sa.sin_port);
}

static void fk_start(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    fk.lst = evconnlistener_new_bind(core.base, on_accept, NULL,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
                                     (struct sockaddr *)&sa, sizeof sa);
    ck_assert_msg(fk.lst != NULL, "cannot listen on %s: %s", sock_path, strerror(errno));
}

/* Pushes one event line to every open /events stream; returns how many. */
static int fk_push_event(const char *json_line)
{
    int n = 0;
    for (int i = 0; i < fk.n_conns; i++) {
        struct fconn *c = fk.conns[i];
        if (c->bev && c->events) {
            size_t len = strlen(json_line) + 1;
            evbuffer_add_printf(bufferevent_get_output(c->bev), "%zx\r\n%s\n\r\n", len,
                                json_line);
            n++;
        }
    }
    return n;
}

static int fk_count(const char *needle)
{
    int n = 0;
    for (int i = 0; i < fk.n_reqs; i++)
        n += strstr(fk.reqs[i], needle) != NULL;
    return n;
}

static void fk_stop(void)
{
    for (int i = 0; i < fk.n_conns; i++) {
        if (fk.conns[i]->bev)
            bufferevent_free(fk.conns[i]->bev);
        free(fk.conns[i]);
    }
    if (fk.lst)
        evconnlistener_free(fk.lst);
    free(fk.list_body);
    for (int i = 0; i < fk.n_stats; i++)
        free(fk.stats[i].body);
    memset(&fk, 0, sizeof fk);
}

/* ---- fixture / helpers ------------------------------------------------------ */

/* Messages of the containers topic. */
static struct {
    int n;
    json_t *last;  /* copy of the latest (owned) */
    double last_t; /* when it came */
    int lists;     /* GET /containers/json the fake had seen by then */
} box;

static int fk_count(const char *needle);

static void on_containers(struct km_topic *t, struct km_msg *msg, void *arg)
{
    box.n++;
    box.lists = fk_count("/containers/json");
    json_decref(box.last);
    box.last = json_deep_copy(km_msg_json(msg));
    box.last_t = now_s();
}

static void setup(void)
{
    build_dir = getenv("PLUGIN_BUILD_DIR");
    if (!build_dir)
        build_dir = ".libs";
    const char *src = getenv("top_srcdir");
    static char fix[512];
    snprintf(fix, sizeof fix, "%s/tests/fixtures/docker", src ? src : "..");
    fixtures = fix;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/check_docker.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(sock_path, sizeof sock_path, "%.80s/docker.sock", tmpdir);
    memset(&core, 0, sizeof core);
    memset(&fk, 0, sizeof fk);
    memset(&box, 0, sizeof box);
    core.base = event_base_new();
    core.bus = km_bus_new();
    ck_assert_ptr_nonnull(core.base);
    ck_assert_ptr_nonnull(core.bus);
    km_log_set_level(getenv("CHECK_VERBOSE") ? KM_LOG_DEBUG : KM_LOG_ERROR);
    km_log_set_hook(quiet, NULL);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    km_loader_free(core.loader);
    core.loader = NULL;
    fk_stop();
    json_decref(box.last);
    box.last = NULL;
    km_bus_free(core.bus);
    km_hc_shutdown(core.base); /* whoever frees the loop frees its CURLM */
    event_base_free(core.base);
    km_config_free(core.cfg);
    km_log_set_hook(NULL, NULL);
    nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Loads docker_stats with `extra` lines in its section. */
static void __attribute__((format(printf, 1, 2))) start_plugin(const char *fmt, ...)
{
    char extra[2048], text[4096], path[600], err[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(extra, sizeof extra, fmt, ap);
    va_end(ap);
    snprintf(path, sizeof path, "%s/katomon.conf", tmpdir);
    snprintf(text, sizeof text,
             "[core]\nplugin_dir = %s\nstate_dir = %s\nlog_level = debug\n\n"
             "[plugin docker_stats]\nsocket = %s\n%s\n",
             build_dir, tmpdir, sock_path, extra);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    ck_assert_msg(km_config_load(path, &core.cfg, err, sizeof err) == 0, "config: %s",
                  err);
    core.loader = km_loader_new(&core);
    ck_assert_ptr_nonnull(core.loader);
    ck_assert_msg(km_loader_load_all(core.loader, err, sizeof err) == 0, "load: %s", err);
    ck_assert_msg(km_bus_find(core.bus, "containers") != NULL,
                  "docker_stats did not start (bad config?)");
    ck_assert_ptr_nonnull(
        km_bus_subscribe(core.bus, "containers", on_containers, NULL, NULL));
}

static void run_for(double seconds)
{
    struct timeval tv = {(time_t)seconds,
                         (suseconds_t)((seconds - (time_t)seconds) * 1e6)};
    event_base_loopexit(core.base, &tv);
    event_base_dispatch(core.base);
}

/* Runs the loop until the containers topic has `n` messages. */
static int wait_msgs(int n, double timeout)
{
    double end = now_s() + timeout;
    while (box.n < n && now_s() < end)
        run_for(0.02);
    return box.n >= n;
}

static json_t *container(json_t *msg, const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(msg, "containers"), i, c)
    {
        const char *n = json_string_value(json_object_get(c, "name"));
        if (n && strcmp(n, name) == 0)
            return c;
    }
    return NULL;
}

/* Member at a dotted path (borrowed). */
static json_t *at(json_t *obj, const char *path)
{
    char buf[128], *save = NULL;
    snprintf(buf, sizeof buf, "%s", path);
    for (char *k = strtok_r(buf, ".", &save); k && obj; k = strtok_r(NULL, ".", &save))
        obj = json_object_get(obj, k);
    return obj;
}

#define ASSERT_INT_AT(obj, path, want)                                                   \
    do {                                                                                 \
        json_t *v_ = at((obj), (path));                                                  \
        ck_assert_msg(json_is_integer(v_), "%s is not a JSON integer", (path));          \
        ck_assert_msg(json_integer_value(v_) == (json_int_t)(want),                      \
                      "%s = %lld, want %lld", (path), (long long)json_integer_value(v_), \
                      (long long)(want));                                                \
    } while (0)

#define ASSERT_NUM_AT(obj, path, want, tol)                                              \
    do {                                                                                 \
        json_t *v_ = at((obj), (path));                                                  \
        ck_assert_msg(json_is_number(v_), "%s is not a number", (path));                 \
        ck_assert_msg(fabs(json_number_value(v_) - (want)) <= (tol),                     \
                      "%s = %.6f, want %.6f", (path), json_number_value(v_),             \
                      (double)(want));                                                   \
    } while (0)

#define ASSERT_STR_AT(obj, path, want)                                                   \
    do {                                                                                 \
        json_t *v_ = at((obj), (path));                                                  \
        ck_assert_msg(json_is_string(v_), "%s is not a string", (path));                 \
        ck_assert_str_eq(json_string_value(v_), (want));                                 \
    } while (0)

#define ASSERT_NULL_AT(obj, path)                                                        \
    do {                                                                                 \
        json_t *v_ = at((obj), (path));                                                  \
        ck_assert_msg(v_ != NULL, "%s is absent (want null)", (path));                   \
        ck_assert_msg(json_is_null(v_), "%s is not null (it must not be made up)",       \
                      (path));                                                           \
    } while (0)

/* Every figure of a container entry is null (no sample). */
static void assert_no_figures(json_t *c)
{
    static const char *const paths[] = {"cpu",
                                        "memory.usage_bytes",
                                        "memory.limit_bytes",
                                        "memory.usage_mb",
                                        "memory.limit_mb",
                                        "memory.usage_percent",
                                        "network.rx_bytes",
                                        "network.tx_bytes",
                                        "network.rx_mb",
                                        "network.tx_mb",
                                        "block_io.read_bytes",
                                        "block_io.write_bytes",
                                        "block_io.read_mb",
                                        "block_io.write_mb",
                                        "pids"};
    ck_assert_ptr_nonnull(c);
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        ASSERT_NULL_AT(c, paths[i]);
}

/*
 * The series registry's view of the latest containers message: the value
 * of `name`{container="<who>"}, or NAN when the series is not live (no
 * sample: what GET /metrics and the history see). A fresh registry per call
 * is enough: ingest walks the one message.
 */
static double series_value(const char *name, const char *who)
{
    struct km_series_reg *reg = km_series_reg_new(0);
    struct km_topic *t = km_bus_find(core.bus, "containers");
    char labels[160];
    double v = NAN;

    ck_assert_ptr_nonnull(reg);
    ck_assert_ptr_nonnull(t);
    km_series_ingest(reg, t, km_topic_latest(t));
    if (who)
        snprintf(labels, sizeof labels, "container=\"%s\"", who);
    struct km_series *s = km_series_find(reg, name, who ? labels : "");
    if (s && s->live)
        v = s->value;
    km_series_reg_free(reg);
    return v;
}

/* A stats answer of `fixture` with its CPU counters moved on from those of
   `from` (cpu_stats of the earlier sample) by d_total and d_system ns, and
   precpu_stats emptied as a one-shot answer has it. */
static json_t *oneshot_after(const char *from, double d_total, double d_system)
{
    json_t *prev = load_fixture(from);
    json_t *next = load_fixture("stats-kato-oneshot.json");
    double t1 = json_number_value(at(prev, "cpu_stats.cpu_usage.total_usage"));
    double s1 = json_number_value(at(prev, "cpu_stats.system_cpu_usage"));
    json_object_set_new(at(next, "cpu_stats.cpu_usage"), "total_usage",
                        json_integer((json_int_t)(t1 + d_total)));
    json_object_set_new(at(next, "cpu_stats"), "system_cpu_usage",
                        json_integer((json_int_t)(s1 + d_system)));
    json_decref(prev);
    return next;
}

/* Runs the loop until no delayed stats answer is pending (they hold memory
   the fake frees when they fire). */
static void fk_wait_idle(double timeout)
{
    double end = now_s() + timeout;
    for (;;) {
        int pending = 0;
        for (int i = 0; i < fk.n_conns; i++)
            pending += fk.conns[i]->pending;
        if (!pending)
            return;
        ck_assert_msg(now_s() < end, "%d delayed answers still pending", pending);
        run_for(0.05);
    }
}

static double mb(double bytes)
{
    return round(bytes / (1024.0 * 1024.0) * 100) / 100;
}

/* Serves every fixture container from the recorded answers. */
static void serve_fixtures(void)
{
    fk_set_list_fixture("containers-json.json");
    fk_set_stats_fixture(ID_KATO, "stats-kato.json");
    fk_set_stats_fixture(ID_REDIS, "stats-kato-redis.json");
    fk_set_stats_fixture(ID_HEALTH, "stats-kato-health.json");
    fk_set_stats_fixture(ID_IO, "stats-kato-io.json");
    fk_set_stats_fixture(ID_SICK, "stats-kato-health.json");
}

/* ---- tests ------------------------------------------------------------------- */

/* The figures of the README's table, from the real cgroup v1 answers. */
START_TEST(test_fixture_figures)
{
    serve_fixtures();
    fk_start();
    start_plugin("containers = kato,kato-redis,kato-health,kato-io,kato-nope\n"
                 "interval = 30\nevents = false\n");
    ck_assert(wait_msgs(1, 5));
    json_t *m = box.last;

    ck_assert_int_eq(json_array_size(json_object_get(m, "containers")), 5);
    ck_assert_ptr_null(json_object_get(m, "error"));
    ck_assert(json_is_true(at(m, "_source.healthy")));
    ck_assert(json_is_null(at(m, "_source.error")));

    json_t *k = container(m, "kato");
    ck_assert_ptr_nonnull(k);
    ASSERT_STR_AT(k, "status", "running");
    ASSERT_STR_AT(k, "id", ID_KATO);
    ck_assert(json_is_null(json_object_get(k, "health")));
    ASSERT_NUM_AT(k, "cpu", 99.32, 0.006);
    ASSERT_INT_AT(k, "memory.usage_bytes", 466944);
    ASSERT_INT_AT(k, "memory.limit_bytes", 25276502016LL);
    ASSERT_NUM_AT(k, "memory.usage_mb", 0.45, 1e-9);
    ASSERT_NUM_AT(k, "memory.limit_mb", mb(25276502016.0), 1e-6);
    ASSERT_NUM_AT(k, "memory.usage_percent", 0.0, 1e-9);
    ASSERT_INT_AT(k, "network.rx_bytes", 806);
    ASSERT_INT_AT(k, "network.tx_bytes", 0);
    ASSERT_NUM_AT(k, "network.rx_mb", 0.0, 1e-9);
    ASSERT_INT_AT(k, "block_io.read_bytes", 0);
    ASSERT_INT_AT(k, "block_io.write_bytes", 0);
    ASSERT_INT_AT(k, "pids", 2);
    ck_assert(json_is_string(json_object_get(k, "timestamp")));
    ck_assert_ptr_null(json_object_get(k, "error"));

    json_t *r = container(m, "kato-redis");
    ASSERT_NUM_AT(r, "cpu", 0.0, 1e-9);
    ASSERT_INT_AT(r, "memory.usage_bytes", 462848);
    ASSERT_INT_AT(r, "memory.limit_bytes", 268435456);
    ASSERT_NUM_AT(r, "memory.limit_mb", 256.0, 1e-9);
    ASSERT_NUM_AT(r, "memory.usage_percent", 0.17, 1e-9);
    ASSERT_INT_AT(r, "network.rx_bytes", 696);

    json_t *h = container(m, "kato-health");
    ASSERT_NUM_AT(h, "cpu", 1.42, 0.006);
    ASSERT_STR_AT(h, "health", "healthy");
    ASSERT_INT_AT(h, "memory.usage_bytes", 569344);
    ASSERT_INT_AT(h, "network.rx_bytes", 0); /* no networks: --network none */
    ASSERT_INT_AT(h, "network.tx_bytes", 0);

    json_t *io = container(m, "kato-io");
    ASSERT_NUM_AT(io, "cpu", 0.01, 0.006);
    ASSERT_INT_AT(io, "memory.usage_bytes", 1122304); /* 17899520 - 16777216 */
    ASSERT_INT_AT(io, "block_io.read_bytes", 8388608);
    ASSERT_INT_AT(io, "block_io.write_bytes", 8388608);
    ASSERT_NUM_AT(io, "block_io.read_mb", 8.0, 1e-9);
    ASSERT_INT_AT(io, "network.rx_bytes", 586);

    json_t *nope = container(m, "kato-nope");
    ck_assert_ptr_nonnull(nope);
    ASSERT_STR_AT(nope, "status", "missing");
    ck_assert_ptr_null(json_object_get(nope, "id"));
    ASSERT_NUM_AT(nope, "cpu", 0.0, 0);
    ASSERT_INT_AT(nope, "memory.usage_bytes", 0);

    ck_assert_ptr_null(container(m, "kato-sick")); /* not watched */

    /* aggregated: running containers only */
    double used = 466944 + 462848 + 569344 + 1122304;
    double lim = 25276502016.0 * 3 + 268435456;
    ASSERT_NUM_AT(m, "aggregated.total_cpu_percent", 99.32 + 0 + 1.42 + 0.01, 0.02);
    ASSERT_NUM_AT(m, "aggregated.total_memory_mb", mb(used), 1e-6);
    ASSERT_NUM_AT(m, "aggregated.total_memory_limit_mb", mb(lim), 1e-6);
    ASSERT_NUM_AT(m, "aggregated.total_memory_percent", round(used / lim * 10000) / 100,
                  1e-9);
    ASSERT_INT_AT(m, "aggregated.container_count", 5);
    ck_assert(json_is_string(at(m, "aggregated.timestamp")));

    /* first samples are plain stream=false (Docker fills precpu) */
    ck_assert_int_eq(fk_count("/stats?stream=false&one-shot"), 0);
    ck_assert_int_eq(fk_count("/stats?stream=false"), 4);
    ck_assert_int_eq(fk_count("/containers/json?all=true"), 1);
}
END_TEST

/* Stats requests run at once, not one after another. */
START_TEST(test_concurrent_requests)
{
    serve_fixtures();
    fk.delay_ms = 400;
    fk_start();
    start_plugin("containers = kato,kato-redis,kato-health,kato-io\ninterval = 30\n"
                 "events = false\n");
    double t0 = now_s();
    ck_assert(wait_msgs(1, 5));
    double took = box.last_t - t0;
    ck_assert_int_eq(fk.max_inflight, 4);
    ck_assert_msg(took < 1.2, "a poll of 4 containers answering in 0.4 s took %.2f s",
                  took);
}
END_TEST

/* Later polls ask one-shot=true and diff against our own previous sample. */
START_TEST(test_oneshot_uses_previous_sample)
{
    serve_fixtures();
    fk_start();
    start_plugin("containers = kato\ninterval = 0.5\nevents = false\n");
    ck_assert(wait_msgs(1, 5));
    ASSERT_NUM_AT(container(box.last, "kato"), "cpu", 99.32, 0.006);

    /* the next sample: one-shot (zero precpu), 1.5 s of CPU in 3e9 ns of
       system time over 2 CPUs: 1.5/3 * 2 * 100 = 100 % */
    json_t *prev = load_fixture("stats-kato.json");
    json_t *next = load_fixture("stats-kato-oneshot.json");
    double t1 = json_number_value(at(prev, "cpu_stats.cpu_usage.total_usage"));
    double s1 = json_number_value(at(prev, "cpu_stats.system_cpu_usage"));
    json_object_set_new(at(next, "cpu_stats.cpu_usage"), "total_usage",
                        json_integer((json_int_t)(t1 + 1.5e9)));
    json_object_set_new(at(next, "cpu_stats"), "system_cpu_usage",
                        json_integer((json_int_t)(s1 + 3e9)));
    ck_assert_int_eq(json_integer_value(at(next, "precpu_stats.cpu_usage.total_usage")),
                     0);
    json_decref(prev);
    fk_set_stats_json(ID_KATO, next);
    ck_assert(wait_msgs(2, 5));
    ck_assert_int_eq(fk_count("/stats?stream=false&one-shot=true"), 1);
    ASSERT_NUM_AT(container(box.last, "kato"), "cpu", 100.0, 0.006);
    ASSERT_INT_AT(container(box.last, "kato"), "memory.usage_bytes", 466944);
}
END_TEST

/* cgroup v2 (inactive_file, no percpu_usage) and v1 without online_cpus. */
START_TEST(test_cgroup_shapes)
{
    json_t *v2 = load_fixture("stats-kato-io.json");
    json_t *st = at(v2, "memory_stats.stats");
    const char *key;
    json_t *val;
    void *tmp;
    json_object_foreach_safe(st, tmp, key, val)
    {
        if (strncmp(key, "total_", 6) == 0)
            json_object_del(st, key);
    }
    json_object_set_new(st, "inactive_file", json_integer(1000000));
    json_object_del(at(v2, "cpu_stats.cpu_usage"), "percpu_usage");
    json_object_del(at(v2, "precpu_stats.cpu_usage"), "percpu_usage");

    /* v1 whose non-hierarchical inactive_file differs: the CLI subtracts
       total_inactive_file */
    json_t *v1 = load_fixture("stats-kato-io.json");
    json_object_set_new(at(v1, "memory_stats.stats"), "inactive_file",
                        json_integer(4096));

    /* v1 without online_cpus: the length of percpu_usage (2) */
    json_t *nocpus = load_fixture("stats-kato.json");
    json_object_del(at(nocpus, "cpu_stats"), "online_cpus");
    json_object_del(at(nocpus, "precpu_stats"), "online_cpus");

    /* page cache larger than usage: floored at 0 */
    json_t *floor0 = load_fixture("stats-kato-redis.json");
    json_object_set_new(at(floor0, "memory_stats.stats"), "total_inactive_file",
                        json_integer(999999999));

    fk_set_list_fixture("containers-json.json");
    fk_set_stats_json(ID_IO, v2);
    fk_set_stats_json(ID_HEALTH, v1);
    fk_set_stats_json(ID_KATO, nocpus);
    fk_set_stats_json(ID_REDIS, floor0);
    fk_start();
    start_plugin("containers = kato,kato-io,kato-health,kato-redis\ninterval = 30\n"
                 "events = false\n");
    ck_assert(wait_msgs(1, 5));
    ASSERT_INT_AT(container(box.last, "kato-io"), "memory.usage_bytes",
                  17899520 - 1000000);
    ASSERT_NUM_AT(container(box.last, "kato-io"), "cpu", 0.01, 0.006);
    ASSERT_INT_AT(container(box.last, "kato-health"), "memory.usage_bytes", 1122304);
    ASSERT_NUM_AT(container(box.last, "kato"), "cpu", 99.32, 0.006);
    ASSERT_INT_AT(container(box.last, "kato-redis"), "memory.usage_bytes", 0);
    ASSERT_NUM_AT(container(box.last, "kato-redis"), "memory.usage_percent", 0.0, 0);
}
END_TEST

/* A stopped container is not sampled; one that stops while sampled has no
   figures (not negative CPU, not zero memory presented as real). */
START_TEST(test_stopped_containers)
{
    fk_set_list_fixture("containers-json-stopped.json");
    fk_set_stats_fixture(ID_KATO, "stats-kato.json");
    fk_set_stats_fixture(ID_REDIS, "stats-kato-redis-stopped.json");
    fk_start();
    start_plugin("containers = kato,kato-redis\ninterval = 0.5\nevents = false\n");
    ck_assert(wait_msgs(1, 5));
    json_t *r = container(box.last, "kato-redis");
    ASSERT_STR_AT(r, "status", "exited");
    ASSERT_NUM_AT(r, "cpu", 0.0, 0);
    ASSERT_INT_AT(r, "memory.usage_bytes", 0);
    ck_assert_int_eq(fk_count("/containers/" ID_REDIS), 0);
    ASSERT_INT_AT(box.last, "aggregated.container_count", 2);
    ASSERT_NUM_AT(box.last, "aggregated.total_cpu_percent", 99.32, 0.006);

    /* now listed as running, but it stops during the stats request */
    fk_set_list_fixture("containers-json.json");
    fk_set_stats_fixture(ID_REDIS, "stats-kato-redis-stopping.json");
    int had = box.n;
    ck_assert(wait_msgs(had + 1, 5));
    r = container(box.last, "kato-redis");
    ck_assert_ptr_nonnull(json_object_get(r, "error"));
    /* the zero "read" says it is not running, before the list does */
    ASSERT_STR_AT(r, "status", "exited");
    ASSERT_NUM_AT(r, "cpu", 0.0, 0);
    ASSERT_INT_AT(r, "memory.usage_bytes", 0);
    ASSERT_INT_AT(r, "memory.limit_bytes", 0);

    /* and running again with real figures: a fresh stream=false sample */
    fk_set_stats_fixture(ID_REDIS, "stats-kato-redis.json");
    int before = fk_count("/containers/" ID_REDIS "/stats?stream=false&one-shot");
    had = box.n;
    ck_assert(wait_msgs(had + 1, 5));
    r = container(box.last, "kato-redis");
    ASSERT_INT_AT(r, "memory.usage_bytes", 462848);
    ck_assert_ptr_null(json_object_get(r, "error"));
    ck_assert_int_eq(fk_count("/containers/" ID_REDIS "/stats?stream=false&one-shot"),
                     before);
}
END_TEST

/* Docker down: the original's error shape, backoff, and recovery. */
START_TEST(test_docker_unreachable)
{
    /* no listener yet: connecting to the socket fails */
    start_plugin("containers = kato\ninterval = 0.5\nevents = false\n");
    ck_assert(wait_msgs(1, 3));
    json_t *m = box.last;
    ck_assert(json_is_string(json_object_get(m, "error")));
    ck_assert(strstr(json_string_value(json_object_get(m, "error")), sock_path) != NULL);
    ck_assert_int_eq(json_array_size(json_object_get(m, "containers")), 0);
    ck_assert(json_is_object(json_object_get(m, "aggregated")));
    ck_assert_int_eq(json_object_size(json_object_get(m, "aggregated")), 0);
    ck_assert(json_is_false(at(m, "_source.healthy")));
    ck_assert_str_eq(json_string_value(at(m, "_source.error")),
                     json_string_value(json_object_get(m, "error")));
    ASSERT_INT_AT(m, "_source.failures", 1);

    /* Docker answering errors: backoff doubles from the interval (1, 2, 4 s) */
    fk_set_list("{\"message\":\"boom\"}", 500);
    fk_start();
    int n0 = box.n;
    run_for(5.0);
    int tries = fk_count("/containers/json");
    ck_assert_msg(tries >= 2 && tries <= 4, "%d list requests in 5 s while failing",
                  tries);
    ck_assert_int_ge(box.n - n0, 2);
    ck_assert(strstr(json_string_value(json_object_get(box.last, "error")), "HTTP 500") !=
              NULL);
    ck_assert_int_ge(json_integer_value(at(box.last, "_source.failures")), 3);
    ck_assert_int_eq(json_array_size(json_object_get(box.last, "containers")), 0);

    /* bad JSON is an error too */
    fk_set_list("[{\"Id\": oops", 200);
    int had = box.n;
    ck_assert(wait_msgs(had + 1, 10));
    ck_assert(strstr(json_string_value(json_object_get(box.last, "error")), "bad JSON") !=
              NULL);

    /* back: healthy at once on the next try, and failures reset */
    serve_fixtures();
    had = box.n;
    ck_assert(wait_msgs(had + 1, 20));
    ck_assert(json_is_true(at(box.last, "_source.healthy")));
    ck_assert_ptr_null(json_object_get(box.last, "error"));
    ASSERT_INT_AT(box.last, "_source.failures", 0);
    ASSERT_NUM_AT(container(box.last, "kato"), "cpu", 99.32, 0.006);
    /* and the interval is back to 0.5 s */
    had = box.n;
    run_for(1.6);
    ck_assert_int_ge(box.n - had, 2);
}
END_TEST

/* A stats request that fails marks that container, not the whole poll. */
START_TEST(test_stats_error_per_container)
{
    serve_fixtures();
    fk_set_stats_text(ID_REDIS, "{\"message\":\"boom\"}", 500);
    fk_set_stats_text(ID_HEALTH, "{not json", 200);
    fk_start();
    start_plugin(
        "containers = kato,kato-redis,kato-health\ninterval = 30\nevents = false\n");
    ck_assert(wait_msgs(1, 5));
    ck_assert(json_is_true(at(box.last, "_source.healthy")));
    ck_assert_ptr_nonnull(json_object_get(container(box.last, "kato-redis"), "error"));
    ck_assert_ptr_nonnull(json_object_get(container(box.last, "kato-health"), "error"));
    ck_assert(strstr(json_string_value(
                         json_object_get(container(box.last, "kato-redis"), "error")),
                     "HTTP 500") != NULL);
    /* running, but no sample: no figures (issue 16), not zeros */
    assert_no_figures(container(box.last, "kato-redis"));
    assert_no_figures(container(box.last, "kato-health"));
    ck_assert_ptr_null(json_object_get(container(box.last, "kato"), "error"));
    ASSERT_NUM_AT(container(box.last, "kato"), "cpu", 99.32, 0.006);
}
END_TEST

/* An event from Docker's stream starts a poll at once. */
START_TEST(test_events_trigger_poll)
{
    serve_fixtures();
    fk_start();
    start_plugin("containers = kato,kato-redis\ninterval = 60\n");
    ck_assert(wait_msgs(1, 5));
    run_for(0.2);
    ck_assert_int_eq(fk_count("/v1.41/events?filters="), 1);
    ck_assert_int_eq(fk_count("%22die%22"), 1); /* the filter names die */

    /* an event for a container we do not watch changes nothing */
    int had = box.n;
    ck_assert_int_eq(
        fk_push_event("{\"status\":\"die\",\"Type\":\"container\",\"Action\":"
                      "\"die\",\"Actor\":{\"ID\":\"" ID_SICK "\",\"Attributes\":"
                      "{\"name\":\"kato-sick\",\"exitCode\":\"137\"}},"
                      "\"time\":1795402219}"),
        1);
    run_for(0.5);
    ck_assert_int_eq(box.n, had);

    /* kato-redis dies: polled at once, not in 60 s */
    fk_set_list_fixture("containers-json-stopped.json");
    double t0 = now_s();
    fk_push_event(
        "{\"status\":\"die\",\"id\":\"" ID_REDIS "\",\"Type\":\"container\","
        "\"Action\":\"die\",\"Actor\":{\"ID\":\"" ID_REDIS "\",\"Attributes\":"
        "{\"name\":\"kato-redis\",\"exitCode\":\"143\",\"katomon.test\":\"1\"}},"
        "\"time\":1795402219}");
    ck_assert(wait_msgs(had + 1, 2));
    ck_assert_msg(box.last_t - t0 < 1.0, "event to publish took %.2f s", box.last_t - t0);
    ASSERT_STR_AT(container(box.last, "kato-redis"), "status", "exited");

    /* an event line split over two reads, and two in one read */
    fk_set_list_fixture("containers-json.json");
    had = box.n;
    for (int i = 0; i < fk.n_conns; i++) {
        struct fconn *c = fk.conns[i];
        if (c->bev && c->events) {
            const char *a =
                "{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"Attr";
            const char *b =
                "ibutes\":{\"name\":\"kato-redis\"}}}\n{\"Type\":\"container\","
                "\"Action\":\"start\",\"Actor\":{\"Attributes\":{\"name\":"
                "\"kato\"}}}\n";
            evbuffer_add_printf(bufferevent_get_output(c->bev), "%zx\r\n%s\r\n",
                                strlen(a), a);
            evbuffer_add_printf(bufferevent_get_output(c->bev), "%zx\r\n%s\r\n",
                                strlen(b), b);
        }
    }
    ck_assert(wait_msgs(had + 1, 2));
    ASSERT_STR_AT(container(box.last, "kato-redis"), "status", "running");
}
END_TEST

/* A die event for kato-redis at Docker's time `tn` (ns). */
static void push_die(const char *name, const char *id, long long tn)
{
    char line[512];
    snprintf(line, sizeof line,
             "{\"status\":\"die\",\"id\":\"%s\",\"Type\":\"container\","
             "\"Action\":\"die\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":"
             "{\"name\":\"%s\",\"exitCode\":\"137\"}},\"time\":%lld,"
             "\"timeNano\":%lld}",
             id, id, name, tn / 1000000000LL, tn);
    ck_assert_int_eq(fk_push_event(line), 1);
}

static void push_start(const char *name, const char *id, long long tn)
{
    char line[512];
    snprintf(line, sizeof line,
             "{\"status\":\"start\",\"id\":\"%s\",\"Type\":\"container\","
             "\"Action\":\"start\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":"
             "{\"name\":\"%s\"}},\"time\":%lld,\"timeNano\":%lld}",
             id, id, name, tn / 1000000000LL, tn);
    ck_assert_int_eq(fk_push_event(line), 1);
}

/* kato-redis as a stopped container shows in a message: not running, 0s. */
static void assert_down(json_t *msg)
{
    json_t *r = container(msg, "kato-redis");
    ck_assert_ptr_nonnull(r);
    ASSERT_STR_AT(r, "status", "exited");
    ck_assert(json_is_false(json_object_get(r, "running")));
    ASSERT_STR_AT(r, "id", ID_REDIS);
    ASSERT_NUM_AT(r, "cpu", 0.0, 0);
    ASSERT_INT_AT(r, "memory.usage_bytes", 0);
    ASSERT_INT_AT(r, "memory.limit_bytes", 0);
    ASSERT_INT_AT(r, "pids", 0);
    ck_assert_ptr_null(json_object_get(r, "error"));
    /* the others keep their figures; the totals leave kato-redis out */
    ASSERT_STR_AT(container(msg, "kato"), "status", "running");
    ASSERT_NUM_AT(container(msg, "kato"), "cpu", 99.32, 0.006);
    ASSERT_NUM_AT(msg, "aggregated.total_memory_mb", mb(466944), 1e-6);
    ASSERT_NUM_AT(msg, "aggregated.total_memory_limit_mb", mb(25276502016.0), 1e-6);
    ASSERT_NUM_AT(msg, "aggregated.total_cpu_percent", 99.32, 0.006);
    ASSERT_INT_AT(msg, "aggregated.container_count", 2);
    ck_assert(json_is_true(at(msg, "_source.healthy")));
}

/*
 * Issue 17: a die event publishes the container down at once, from the
 * event, before any poll (container_down used to wait for the poll the
 * event started, 116-568 ms with interval = 1). Docker's list keeps saying
 * "running" here throughout (it lags the event by ~0.4 s), and its stats
 * keep answering: the polls after the die must not flip the container back
 * until a start event says it runs again.
 */
START_TEST(test_die_publishes_at_once)
{
    serve_fixtures();
    fk_start();
    start_plugin("containers = kato,kato-redis\ninterval = 60\n");
    ck_assert(wait_msgs(1, 5));
    run_for(0.2); /* the /events stream is open */
    ASSERT_STR_AT(container(box.last, "kato-redis"), "status", "running");
    int lists = fk_count("/containers/json");

    /* die: the next message is the event's, no list request before it */
    int had = box.n;
    push_die("kato-redis", ID_REDIS, 1795402219000000000LL);
    ck_assert(wait_msgs(had + 1, 5));
    ck_assert_int_eq(box.lists, lists);
    assert_down(box.last);

    /* the poll the event started: Docker still lists it running */
    ck_assert(wait_msgs(had + 2, 5));
    ck_assert_int_eq(box.lists, lists + 1);
    assert_down(box.last);

    /* a start older than the die does not lift it; a later one does */
    had = box.n;
    push_start("kato-redis", ID_REDIS, 1795402218900000000LL);
    ck_assert(wait_msgs(had + 1, 5));
    assert_down(box.last);
    had = box.n;
    push_start("kato-redis", ID_REDIS, 1795402221000000000LL);
    ck_assert(wait_msgs(had + 1, 5));
    ASSERT_STR_AT(container(box.last, "kato-redis"), "status", "running");
    ASSERT_INT_AT(container(box.last, "kato-redis"), "memory.usage_bytes", 462848);

    /* a poll already under way when the die comes (its stats answers are
       the container's last, running): the event's message first, then
       the poll's, both down */
    fk.delay_ms = 300;
    lists = fk_count("/containers/json");
    had = box.n;
    push_start("kato", ID_KATO, 1795402221500000000LL); /* any poll will do */
    double end = now_s() + 5;
    while (fk.inflight < 2 && now_s() < end)
        run_for(0.01);
    ck_assert_int_eq(fk.inflight, 2);
    push_die("kato-redis", ID_REDIS, 1795402222000000000LL);
    ck_assert(wait_msgs(had + 1, 5));
    ck_assert_int_eq(box.lists, lists + 1); /* before the poll's answer */
    assert_down(box.last);
    ck_assert(wait_msgs(had + 2, 5));
    assert_down(box.last);
    ck_assert(wait_msgs(had + 3, 5)); /* the repoll the die asked for */
    assert_down(box.last);
    fk_wait_idle(5);
}
END_TEST

/* A kill event of kato-redis with `signal` (Docker's number as text). */
static void push_kill(const char *signal)
{
    char line[512];
    snprintf(line, sizeof line,
             "{\"status\":\"kill\",\"id\":\"" ID_REDIS "\",\"Type\":\"container\","
             "\"Action\":\"kill\",\"Actor\":{\"ID\":\"" ID_REDIS "\",\"Attributes\":"
             "{\"name\":\"kato-redis\",\"signal\":\"%s\"}},\"time\":1795402219,"
             "\"timeNano\":1795402219000000000}",
             signal);
    ck_assert_int_eq(fk_push_event(line), 1);
}

/* docker stop's SIGTERM may be survived: only the poll it starts (Docker
   still lists it running: it stays running). docker kill's SIGKILL cannot:
   published down at once, before its die. */
START_TEST(test_sigkill_publishes_at_once)
{
    serve_fixtures();
    fk_start();
    start_plugin("containers = kato,kato-redis\ninterval = 60\n");
    ck_assert(wait_msgs(1, 5));
    run_for(0.2);
    int lists = fk_count("/containers/json");
    int had = box.n;
    push_kill("15");
    ck_assert(wait_msgs(had + 1, 5));
    ck_assert_int_eq(box.lists, lists + 1); /* the poll's message */
    ASSERT_STR_AT(container(box.last, "kato-redis"), "status", "running");

    lists = fk_count("/containers/json");
    had = box.n;
    push_kill("9");
    ck_assert(wait_msgs(had + 1, 5));
    ck_assert_int_eq(box.lists, lists); /* before any poll */
    assert_down(box.last);
    ck_assert(wait_msgs(had + 2, 5)); /* and the poll holds it down */
    assert_down(box.last);
}
END_TEST

/* A start we never hear of (/events reconnecting): the polls within the
   grace (5 s) after the die keep the container down, a later one that
   still lists it running is believed. */
START_TEST(test_die_then_missed_start)
{
    serve_fixtures();
    fk_start();
    start_plugin("containers = kato,kato-redis\ninterval = 1\n");
    ck_assert(wait_msgs(1, 5));
    run_for(0.2);
    int had = box.n;
    push_die("kato-redis", ID_REDIS, 1795402219000000000LL);
    ck_assert(wait_msgs(had + 1, 5));
    assert_down(box.last);
    /* Docker lists it running on: the polls within the grace keep it
       down; a later one shows it running */
    double end = now_s() + 30;
    int downs = 0;
    while (now_s() < end) {
        had = box.n;
        ck_assert(wait_msgs(had + 1, 5));
        const char *st = json_string_value(
            json_object_get(container(box.last, "kato-redis"), "status"));
        if (strcmp(st, "running") == 0)
            break;
        downs++;
    }
    ck_assert_msg(downs >= 1, "the poll after the die flipped it back");
    ASSERT_STR_AT(container(box.last, "kato-redis"), "status", "running");
    ASSERT_INT_AT(container(box.last, "kato-redis"), "memory.usage_bytes", 462848);
}
END_TEST

/* label = KEY=VALUE and containers = * */
START_TEST(test_label_and_all)
{
    serve_fixtures();
    fk_start();
    start_plugin("label = katomon.test=1\ninterval = 30\nevents = false\n");
    ck_assert(wait_msgs(1, 5));
    ck_assert_int_eq(json_array_size(json_object_get(box.last, "containers")), 5);
    ck_assert_ptr_nonnull(container(box.last, "kato-sick"));
    ASSERT_STR_AT(container(box.last, "kato-sick"), "health", "unhealthy");
}
END_TEST

START_TEST(test_label_no_match)
{
    serve_fixtures();
    fk_start();
    start_plugin("label = katomon.test=2\ninterval = 30\nevents = false\n");
    ck_assert(wait_msgs(1, 5));
    ck_assert_int_eq(json_array_size(json_object_get(box.last, "containers")), 0);
    ASSERT_INT_AT(box.last, "aggregated.container_count", 0);
    ck_assert(json_is_true(at(box.last, "_source.healthy")));
}
END_TEST

START_TEST(test_all_containers)
{
    serve_fixtures();
    fk_start();
    start_plugin("containers = *\ninterval = 30\nevents = false\n");
    ck_assert(wait_msgs(1, 5));
    ck_assert_int_eq(json_array_size(json_object_get(box.last, "containers")), 5);
    ck_assert_int_eq(fk_count("/stats?stream=false"), 5);
}
END_TEST

/* url = http://HOST:PORT: the engine over TCP instead of the unix socket. */
START_TEST(test_tcp_engine)
{
    serve_fixtures();
    int port = fk_start_tcp();
    start_plugin(
        "url = http://127.0.0.1:%d\ncontainers = kato,kato-redis\ninterval = 30\n", port);
    ck_assert(wait_msgs(1, 5));
    ck_assert(json_is_true(at(box.last, "_source.healthy")));
    ASSERT_NUM_AT(container(box.last, "kato"), "cpu", 99.32, 0.006);
    ASSERT_INT_AT(container(box.last, "kato-redis"), "memory.usage_bytes", 462848);
    run_for(0.2);
    ck_assert_int_eq(fk_count("/v1.41/events?filters="), 1);
}
END_TEST

/* ---- issue 16: absent, never zero ------------------------------------------- */

/* A first sample whose precpu_stats is empty (Docker's first collector
   frame, or a one-shot answer) and no previous sample of ours: CPU % cannot
   be computed. It used to come out as total/system since boot (~0 %). */
START_TEST(test_first_sample_without_previous)
{
    fk_set_list_fixture("containers-json.json");
    fk_set_stats_fixture(ID_KATO, "stats-kato-oneshot.json");
    fk_start();
    start_plugin("containers = kato\ninterval = 0.5\nevents = false\n");
    ck_assert(wait_msgs(1, 10));
    json_t *k = container(box.last, "kato");
    ASSERT_STR_AT(k, "status", "running");
    ASSERT_NULL_AT(k, "cpu");
    ck_assert_ptr_null(json_object_get(k, "error")); /* the sample itself is fine */
    ASSERT_INT_AT(k, "memory.usage_bytes", 466944);  /* what it can give, it gives */
    ASSERT_INT_AT(k, "pids", 2);
    ASSERT_NULL_AT(box.last, "aggregated.total_cpu_percent");
    ASSERT_NUM_AT(box.last, "aggregated.total_memory_mb", mb(466944), 1e-9);
    /* a null is not a sample: the series is not live, memory's is */
    ck_assert(isnan(series_value("katomon_container_cpu_percent", "kato")));
    ck_assert(isnan(series_value("katomon_containers_cpu_percent", NULL)));
    ck_assert(series_value("katomon_container_memory_usage_bytes", "kato") == 466944);

    /* the next poll diffs against that sample: 1 s of CPU in 2e9 ns of
       system time over 2 CPUs = 100 % */
    fk_set_stats_json(ID_KATO, oneshot_after("stats-kato-oneshot.json", 1e9, 2e9));
    ck_assert(wait_msgs(2, 10));
    ck_assert_int_ge(fk_count("/stats?stream=false&one-shot=true"), 1);
    ASSERT_NUM_AT(container(box.last, "kato"), "cpu", 100.0, 0.006);
    ASSERT_NUM_AT(box.last, "aggregated.total_cpu_percent", 100.0, 0.006);
    ck_assert(fabs(series_value("katomon_container_cpu_percent", "kato") - 100.0) <
              0.006);
}
END_TEST

/* system_cpu_usage that did not advance between two samples (polls close
   together): 0/0 is not 0 %. A container that used no CPU while the system
   counter advanced is a measured 0 % and stays 0. */
START_TEST(test_system_usage_not_advancing)
{
    serve_fixtures();
    fk_start();
    start_plugin("containers = kato,kato-redis\ninterval = 0.5\nevents = false\n");
    ck_assert(wait_msgs(1, 10));
    ASSERT_NUM_AT(container(box.last, "kato"), "cpu", 99.32, 0.006);

    fk_set_stats_json(ID_KATO, oneshot_after("stats-kato.json", 5e8, 0));
    fk_set_stats_json(ID_REDIS, oneshot_after("stats-kato-redis.json", 0, 2e9));
    ck_assert(wait_msgs(2, 10));
    ASSERT_NULL_AT(container(box.last, "kato"), "cpu");
    ASSERT_NUM_AT(container(box.last, "kato-redis"), "cpu", 0.0, 0); /* measured */
    ck_assert(series_value("katomon_container_cpu_percent", "kato-redis") == 0.0);
    ck_assert(isnan(series_value("katomon_container_cpu_percent", "kato")));
    ASSERT_NULL_AT(box.last, "aggregated.total_cpu_percent");

    /* the counters move on: figures again, diffed against the sample that
       had none (kato: 1e9 ns more CPU in 2e9 ns of system time on 2 CPUs) */
    fk_set_stats_json(ID_KATO, oneshot_after("stats-kato.json", 5e8 + 1e9, 2e9));
    fk_set_stats_json(ID_REDIS, oneshot_after("stats-kato-redis.json", 0, 4e9));
    ck_assert(wait_msgs(3, 10));
    ASSERT_NUM_AT(container(box.last, "kato"), "cpu", 100.0, 0.006);
    ASSERT_NUM_AT(box.last, "aggregated.total_cpu_percent", 100.0, 0.006);
}
END_TEST

/* The container's counter went back (it restarted between two one-shot
   polls, same id): no figure for that poll, the next one diffs again. */
START_TEST(test_counter_went_back)
{
    serve_fixtures();
    fk_start();
    start_plugin("containers = kato\ninterval = 0.5\nevents = false\n");
    ck_assert(wait_msgs(1, 10));
    fk_set_stats_json(ID_KATO, oneshot_after("stats-kato.json", -6e9, 2e9));
    ck_assert(wait_msgs(2, 10));
    ASSERT_NULL_AT(container(box.last, "kato"), "cpu");
    json_t *next = oneshot_after("stats-kato.json", -6e9 + 1e9, 4e9);
    fk_set_stats_json(ID_KATO, next);
    ck_assert(wait_msgs(3, 10));
    ASSERT_NUM_AT(container(box.last, "kato"), "cpu", 100.0, 0.006);
}
END_TEST

/* memory_stats without usage/limit (Docker leaves them out, omitempty, when
   it cannot read the cgroup; seen as "memory_stats": {}) and no
   pids_stats: those figures are null, CPU is still there. */
START_TEST(test_memory_stats_missing)
{
    json_t *kato = load_fixture("stats-kato.json");
    json_object_set_new(kato, "memory_stats", json_object());
    json_object_del(kato, "pids_stats");
    json_t *redis = load_fixture("stats-kato-redis.json");
    json_object_del(at(redis, "memory_stats"), "usage"); /* limit alone */
    fk_set_list_fixture("containers-json.json");
    fk_set_stats_json(ID_KATO, kato);
    fk_set_stats_json(ID_REDIS, redis);
    fk_start();
    start_plugin("containers = kato,kato-redis\ninterval = 30\nevents = false\n");
    ck_assert(wait_msgs(1, 10));
    json_t *k = container(box.last, "kato");
    ASSERT_NUM_AT(k, "cpu", 99.32, 0.006);
    ASSERT_NULL_AT(k, "memory.usage_bytes");
    ASSERT_NULL_AT(k, "memory.usage_mb");
    ASSERT_NULL_AT(k, "memory.limit_bytes");
    ASSERT_NULL_AT(k, "memory.limit_mb");
    ASSERT_NULL_AT(k, "memory.usage_percent");
    ASSERT_NULL_AT(k, "pids");
    ASSERT_INT_AT(k, "network.rx_bytes", 806);
    json_t *r = container(box.last, "kato-redis");
    ASSERT_NULL_AT(r, "memory.usage_bytes");
    ASSERT_INT_AT(r, "memory.limit_bytes", 268435456);
    ASSERT_NULL_AT(r, "memory.usage_percent");
    ASSERT_NUM_AT(box.last, "aggregated.total_cpu_percent", 99.32, 0.006);
    ASSERT_NULL_AT(box.last, "aggregated.total_memory_mb");
    ASSERT_NULL_AT(box.last, "aggregated.total_memory_limit_mb");
    ASSERT_NULL_AT(box.last, "aggregated.total_memory_percent");
    ASSERT_INT_AT(box.last, "aggregated.container_count", 2);
    ck_assert(isnan(series_value("katomon_container_memory_usage_bytes", "kato")));
    ck_assert(isnan(series_value("katomon_containers_memory_bytes", NULL)));
    ck_assert(series_value("katomon_container_memory_limit_bytes", "kato-redis") ==
              268435456);
}
END_TEST

/* A stats request that times out (Docker slow on a loaded machine): the
   container is running with no figures, not 0 % and 0 B. The next poll
   that gets an answer has figures again. */
START_TEST(test_stats_timeout)
{
    serve_fixtures();
    fk.delay_ms = 2000;
    fk_start();
    start_plugin("containers = kato,kato-redis\ninterval = 0.5\ntimeout = 0.5\n"
                 "events = false\n");
    ck_assert(wait_msgs(1, 10));
    for (int i = 0; i < 2; i++) {
        json_t *c = container(box.last, i ? "kato-redis" : "kato");
        ASSERT_STR_AT(c, "status", "running");
        ck_assert(json_is_true(json_object_get(c, "running")));
        ck_assert_ptr_nonnull(json_object_get(c, "error"));
        assert_no_figures(c);
    }
    ASSERT_NULL_AT(box.last, "aggregated.total_cpu_percent");
    ASSERT_NULL_AT(box.last, "aggregated.total_memory_mb");
    ASSERT_NULL_AT(box.last, "aggregated.total_memory_percent");
    ASSERT_INT_AT(box.last, "aggregated.container_count", 2);
    /* Docker answered the list: the source is up, these samples are not */
    ck_assert(json_is_true(at(box.last, "_source.healthy")));
    ck_assert(isnan(series_value("katomon_container_cpu_percent", "kato")));
    ck_assert(isnan(series_value("katomon_container_memory_usage_bytes", "kato")));
    ck_assert(isnan(series_value("katomon_containers_cpu_percent", NULL)));
    ck_assert(series_value("katomon_container_up", "kato") == 1);

    /* Docker in time again */
    fk.delay_ms = 0;
    int had = box.n;
    double end = now_s() + 15;
    while (now_s() < end && !json_is_number(at(container(box.last, "kato"), "cpu")))
        ck_assert(wait_msgs(box.n + 1, 10));
    ck_assert_int_gt(box.n, had);
    ASSERT_NUM_AT(container(box.last, "kato"), "cpu", 99.32, 0.006);
    ASSERT_INT_AT(container(box.last, "kato-redis"), "memory.usage_bytes", 462848);
    ck_assert_ptr_null(json_object_get(container(box.last, "kato"), "error"));
    fk_wait_idle(10);
}
END_TEST

/* A partial answer: a body cut short (bad JSON), and one that parses but
   is not a sample (no "read", no cpu_stats): no figures, not zeros. */
START_TEST(test_partial_answer)
{
    serve_fixtures();
    char *text = read_fixture("stats-kato.json");
    text[strlen(text) / 2] = '\0';
    fk_set_stats_text(ID_KATO, text, 200);
    free(text);
    fk_set_stats_text(ID_REDIS, "{\"memory_stats\": {}}", 200);
    fk_start();
    start_plugin("containers = kato,kato-redis,kato-io\ninterval = 30\nevents = false\n");
    ck_assert(wait_msgs(1, 10));
    json_t *k = container(box.last, "kato");
    ASSERT_STR_AT(k, "status", "running");
    ck_assert(strstr(json_string_value(json_object_get(k, "error")), "bad JSON") != NULL);
    assert_no_figures(k);
    json_t *r = container(box.last, "kato-redis");
    ck_assert(strstr(json_string_value(json_object_get(r, "error")), "incomplete") !=
              NULL);
    assert_no_figures(r);
    ASSERT_INT_AT(container(box.last, "kato-io"), "block_io.read_bytes", 8388608);
    ASSERT_NULL_AT(box.last, "aggregated.total_cpu_percent");
}
END_TEST

/* Every test, in order. CHECK_ONLY=name runs just one (for debugging). */
static const struct {
    const char *name;
    const TTest *const *test;
} tests[] = {
#define T(t)                                                                             \
    {                                                                                    \
#t, &t                                                                           \
    }
    T(test_fixture_figures),
    T(test_concurrent_requests),
    T(test_oneshot_uses_previous_sample),
    T(test_cgroup_shapes),
    T(test_stopped_containers),
    T(test_docker_unreachable),
    T(test_stats_error_per_container),
    T(test_events_trigger_poll),
    T(test_die_publishes_at_once),
    T(test_die_then_missed_start),
    T(test_sigkill_publishes_at_once),
    T(test_label_and_all),
    T(test_label_no_match),
    T(test_all_containers),
    T(test_tcp_engine),
    T(test_first_sample_without_previous),
    T(test_system_usage_not_advancing),
    T(test_counter_went_back),
    T(test_memory_stats_missing),
    T(test_stats_timeout),
    T(test_partial_answer),
#undef T
};

static Suite *docker_suite(void)
{
    Suite *s = suite_create("docker_stats");
    TCase *tc = tcase_create("fake engine");
    const char *only = getenv("CHECK_ONLY");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!only || strcmp(only, tests[i].name) == 0)
            tcase_add_test(tc, *tests[i].test);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(docker_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
