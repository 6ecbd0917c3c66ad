/*
 * selfstats.c - katomon's own figures as series (see selfstats.h).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "history.h"
#include "loader.h"
#include "selfstats.h"
#include "server.h"
#include "ws.h"

/* ---- one figure ---- */

static void km_self_set(struct km_series_reg *reg, const char *name, const char *help,
                        enum km_series_type type, const char *labels, double v)
{
    struct km_series *s = km_series_get(reg, name, help, type, labels);
    if (s) /* NULL: the cap, counted by the registry */
        km_series_set(s, v, 0);
}

/* The figure with one label key="value"; skipped when the value does not
   fit the label text. */
static void km_self_set1(struct km_series_reg *reg, const char *name, const char *help,
                         enum km_series_type type, const char *key, const char *value,
                         double v)
{
    char labels[KM_SERIES_LABELS_MAX];

    labels[0] = '\0';
    if (km_labels_add(labels, sizeof labels, key, value) == 0)
        km_self_set(reg, name, help, type, labels, v);
}

/* ---- the process (procfs: small, never blocks on a disk) ---- */

/* Reads at most len - 1 bytes of a small file into buf; -1 on error. */
static ssize_t km_read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n >= 0)
        buf[n] = '\0';
    return n;
}

static double km_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Seconds after boot the process started: field 22 of /proc/self/stat
   (after the command name, which may hold spaces, in parentheses). */
static double km_proc_started_after_boot(void)
{
    char buf[1024];
    const char *p;
    long hz = sysconf(_SC_CLK_TCK);

    if (km_read_small("/proc/self/stat", buf, sizeof buf) <= 0 ||
        !(p = strrchr(buf, ')')) || hz <= 0)
        return -1;
    for (int field = 2; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? (double)strtoull(p + 1, NULL, 10) / (double)hz : -1;
}

/* Unix time the process started, worked out once: it never changes. */
static double km_proc_start_time(void)
{
    static double start;
    char buf[128];
    double after_boot;

    if (start > 0)
        return start;
    start = km_now();
    after_boot = km_proc_started_after_boot();
    if (after_boot >= 0 && km_read_small("/proc/uptime", buf, sizeof buf) > 0)
        start = start - strtod(buf, NULL) + after_boot;
    return start;
}

/* Resident set size in bytes (field 2 of /proc/self/statm, in pages); -1. */
static double km_proc_rss(void)
{
    char buf[256];
    unsigned long long size, resident;

    if (km_read_small("/proc/self/statm", buf, sizeof buf) <= 0 ||
        sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return -1;
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

/* Open file descriptors, the directory's own left out; -1. */
static double km_proc_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return (double)(n - 1);
}

static void km_self_process(struct km_series_reg *reg)
{
    struct rusage ru;
    double v;

    if ((v = km_proc_rss()) >= 0)
        km_self_set(reg, "process_resident_memory_bytes",
                    "Resident memory size in bytes.", KM_SERIES_GAUGE, "", v);
    if ((v = km_proc_fds()) >= 0)
        km_self_set(reg, "process_open_fds", "Number of open file descriptors.",
                    KM_SERIES_GAUGE, "", v);
    km_self_set(reg, "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.", KM_SERIES_GAUGE,
                "", km_proc_start_time());
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        km_self_set(reg, "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.", KM_SERIES_COUNTER,
                    "",
                    (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                        (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
}

/* ---- katomon's parts ---- */

static void km_self_topic(struct km_topic *t, void *arg)
{
    struct km_series_reg *reg = arg;
    const char *name = km_topic_name(t);

    km_self_set1(reg, "katomon_bus_messages_total",
                 "Messages the bus accepted, per topic.", KM_SERIES_COUNTER, "topic",
                 name, (double)km_topic_published(t));
    km_self_set1(
        reg, "katomon_bus_rejected_total",
        "Messages the bus refused (failed validation or not the owner), per topic.",
        KM_SERIES_COUNTER, "topic", name, (double)km_topic_rejected(t));
}

static void km_self_plugin(const struct km_plugin_info *info, void *arg)
{
    km_self_set1(
        arg, "katomon_plugin_up",
        "1 when the plugin is running, 0 when it is disabled or off.", KM_SERIES_GAUGE,
        "plugin", info->name,
        info->state == KM_PLUGIN_RUNNING || info->state == KM_PLUGIN_PASSIVE ? 1 : 0);
}

static void km_self_ws(struct km_series_reg *reg, struct km_core *core)
{
    struct km_ws *ws = core->server ? km_server_ws(core->server) : NULL;
    struct km_ws_stats st;

    if (!ws)
        return;
    km_ws_get_stats(ws, &st);
    km_self_set(reg, "katomon_ws_clients", "WebSocket clients connected now.",
                KM_SERIES_GAUGE, "", (double)st.clients);
    km_self_set(reg, "katomon_ws_frames_sent_total",
                "WebSocket frames queued to clients (broadcast and replies).",
                KM_SERIES_COUNTER, "", (double)(st.frames_queued + st.private_frames));
    km_self_set(reg, "katomon_ws_bytes_sent_total",
                "Bytes of the WebSocket frames handed to clients.", KM_SERIES_COUNTER, "",
                (double)st.bytes_sent);
}

static void km_self_history(struct km_series_reg *reg, struct km_core *core)
{
    struct km_history_stats st;

    if (!core->history)
        return;
    km_history_get_stats(core->history, &st);
    km_self_set(reg, "katomon_history_samples", "Tier-0 samples the history store holds.",
                KM_SERIES_GAUGE, "", (double)st.samples);
    km_self_set(reg, "katomon_history_bytes",
                "Memory the history store reserved for chunks, all tiers, in bytes.",
                KM_SERIES_GAUGE, "", (double)st.bytes_reserved);
    /* a kill -9 loses what came after the last completed write: these say
       when that was, and whether writes fail or fall behind */
    km_self_set(reg, "katomon_history_flushes_total", "History files written whole.",
                KM_SERIES_COUNTER, "", (double)st.flushes);
    km_self_set(reg, "katomon_history_flush_errors_total",
                "History file writes that failed (each logged).", KM_SERIES_COUNTER, "",
                (double)st.flush_errors);
    km_self_set(reg, "katomon_history_flush_skipped_total",
                "History flushes skipped because the last writer still ran.",
                KM_SERIES_COUNTER, "", (double)st.flush_skipped);
}

void km_selfstats_collect(struct km_series_reg *reg, void *arg)
{
    struct km_core *core = arg;

    km_self_ws(reg, core);
    if (core->bus)
        km_bus_foreach(core->bus, km_self_topic, reg);
    if (core->loader)
        km_loader_foreach(core->loader, km_self_plugin, reg);
    km_self_history(reg, core);
    km_self_process(reg);
    km_self_set1(reg, "katomon_build_info", "katomon's version, as a label; always 1.",
                 KM_SERIES_GAUGE, "version", PACKAGE_VERSION, 1);
    /* last, so that they count the series set above */
    km_self_set(reg, "katomon_series_refused_total",
                "Series not created because [history] max_series was reached.",
                KM_SERIES_COUNTER, "", (double)km_series_refused(reg));
    /* got before counting: the first time, it counts itself */
    struct km_series *s =
        km_series_get(reg, "katomon_series", "Series the registry holds, live and stale.",
                      KM_SERIES_GAUGE, "");
    if (s)
        km_series_set(s, (double)km_series_count(reg), 0);
}

int km_selfstats_add(struct km_core *core)
{
    if (!core->series)
        return -1;
    return km_series_add_collector(core->series, km_selfstats_collect, core);
}
