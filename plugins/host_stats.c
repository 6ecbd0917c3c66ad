/*
 * host_stats.c - CPU, memory, load and uptime of the machine, from procfs.
 *
 * Publishes one message on the state topic `host` every `interval` seconds:
 *
 *   {"cpu_percent": 12.5, "cpu_count": 8,
 *    "memory": {"total_bytes": ..., "available_bytes": ..., "used_bytes": ...,
 *               "used_percent": 41.2},
 *    "load": {"1m": 0.52, "5m": 0.58, "15m": 0.59},
 *    "uptime_seconds": 12345.6, "hostname": "box",
 *    "timestamp": "2026-11-23T02:40:00.123Z"}
 *
 * cpu_percent is the busy share of all CPUs between two reads of
 * /proc/stat. The first read is taken at init and the timer does not fire
 * at once, so the first message comes one interval after start and already
 * carries a real figure (a since-boot average would be misleading, and a
 * null first value would make every consumer special-case it). It is null
 * only when no clock tick elapsed or the counters went backwards.
 * Percentages are rounded to two decimals, as docker_stats' are.
 *
 * memory.available_bytes is MemAvailable (the kernel's estimate of what can
 * be allocated without swapping); kernels older than 3.14 lack it and get
 * MemFree + Buffers + Cached instead. used = total - available.
 *
 * The files are tiny procfs reads that never block, so they are read on the
 * event loop. A file that cannot be read or parsed skips that sample (the
 * topic keeps its last good value) with one warning until reads work again;
 * nothing in them is trusted (lengths, numbers, NaN, UTF-8).
 *
 * Series (GET /metrics, history; names declared in host_metrics): every
 * number above as katomon_host_cpu_percent, katomon_host_cpus,
 * katomon_host_memory_{total,available,used}_bytes,
 * katomon_host_memory_used_percent, katomon_host_load{1,5,15} and
 * katomon_host_uptime_seconds, all gauges. The topic has no "_source" (a
 * sample is read or skipped), so no katomon_source_up for it.
 *
 * `proc_path` lets it watch the host from inside a container where the
 * host's /proc is mounted elsewhere (e.g. /host/proc), and lets tests feed
 * it made-up files.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <katomon/plugin.h>
#include <katomon/util.h>

static const struct km_conf_key config_keys[] = {
    {"interval", KM_CONF_DOUBLE, "5", 0.1, 86400, "seconds between samples"},
    {"proc_path", KM_CONF_STRING, "/proc", 0, 0,
     "where procfs is mounted (e.g. /host/proc inside a container)"},
    {NULL, KM_CONF_STRING, NULL, 0, 0, NULL},
};

static const struct km_field memory_fields[] = {
    KM_FIELD("total_bytes", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("available_bytes", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("used_bytes", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("used_percent", KM_NUMBER, KM_F_REQUIRED),
    KM_FIELD_END,
};

static const struct km_field load_fields[] = {
    KM_FIELD("1m", KM_NUMBER, KM_F_REQUIRED),
    KM_FIELD("5m", KM_NUMBER, KM_F_REQUIRED),
    KM_FIELD("15m", KM_NUMBER, KM_F_REQUIRED),
    KM_FIELD_END,
};

static const struct km_field host_fields[] = {
    KM_FIELD("cpu_percent", KM_NUMBER, KM_F_REQUIRED | KM_F_NULLABLE),
    KM_FIELD("cpu_count", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD_OBJECT("memory", KM_F_REQUIRED, memory_fields),
    KM_FIELD_OBJECT("load", KM_F_REQUIRED, load_fields),
    KM_FIELD("uptime_seconds", KM_NUMBER, KM_F_REQUIRED),
    KM_FIELD("hostname", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("timestamp", KM_STRING, KM_F_REQUIRED),
    KM_FIELD_END,
};

/* The series of `host` (katomon/plugin.h): katomon_host_* in base units. */
static const struct km_metric host_metrics[] = {
    {"cpu_percent", "host_cpu_percent",
     "Busy share of all CPUs of the machine over the last interval, percent (0-100)", 0,
     0, NULL},
    /* not "host_cpu_count": promtool reserves _count for histograms and summaries */
    {"cpu_count", "host_cpus", "CPUs of the machine (online, from /proc/stat)", 0, 0,
     NULL},
    {"memory.total_bytes", "host_memory_total_bytes",
     "Memory of the machine (MemTotal), bytes", 0, 0, NULL},
    {"memory.available_bytes", "host_memory_available_bytes",
     "Memory that can be allocated without swapping (MemAvailable), bytes", 0, 0, NULL},
    {"memory.used_bytes", "host_memory_used_bytes",
     "Memory in use: total minus available, bytes", 0, 0, NULL},
    {"memory.used_percent", "host_memory_used_percent",
     "Memory in use as a share of the total, percent (0-100)", 0, 0, NULL},
    {"load.1m", "host_load1", "Load average over 1 minute (runnable and blocked tasks)",
     0, 0, NULL},
    {"load.5m", "host_load5", "Load average over 5 minutes (runnable and blocked tasks)",
     0, 0, NULL},
    {"load.15m", "host_load15",
     "Load average over 15 minutes (runnable and blocked tasks)", 0, 0, NULL},
    {"uptime_seconds", "host_uptime_seconds", "Time since the machine booted, seconds", 0,
     0, NULL},
    {NULL, NULL, NULL, 0, 0, NULL},
};

/* The topic init declares; named in the descriptor too (.topics), so a katomon
   with collect = false knows it without running the plugin. */
static const struct km_topic_def hs_topics[] = {
    {"host", KM_TOPIC_STATE, host_fields, 0,
     "CPU, memory, load and uptime of the machine", host_metrics},
    {NULL, 0, NULL, 0, NULL, NULL},
};

/* Aggregate CPU time from the "cpu" line of /proc/stat, in clock ticks. */
struct cpu_times {
    unsigned long long busy;  /* user nice system irq softirq steal */
    unsigned long long total; /* busy + idle + iowait */
};

/* One complete sample. */
struct sample {
    struct cpu_times cpu;    /* counters now */
    long cpu_count;          /* cpuN lines */
    long long mem_total;     /* bytes */
    long long mem_available; /* bytes */
    double load[3];          /* 1, 5, 15 minutes */
    double uptime;           /* seconds */
};

/* Plugin state; reset at init. */
static struct {
    const struct km_host *host; /* the core's interface */
    struct km_ctx *ctx;         /* our context */
    struct km_topic *topic;     /* `host` */
    struct km_timer *timer;     /* sampling timer */
    double interval;            /* its period, seconds */
    const char *proc;           /* proc_path, borrowed from the core */
    struct cpu_times prev;      /* counters at the previous read */
    int have_prev;              /* prev is set */
    int failing;                /* the last sample failed (warned once) */
} hs;

/* ---- parsing ------------------------------------------------------------- */

/* Unsigned decimal at *p (after blanks); advances *p. */
static int parse_u64(const char **p, unsigned long long *out)
{
    const char *s = *p;
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    *out = strtoull(s, &end, 10);
    if (errno)
        return -1;
    *p = end;
    return 0;
}

/* Finite, non-negative double at *p; advances *p. Refuses "nan", "inf". */
static int parse_num(const char **p, double *out)
{
    const char *s = *p;
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    *out = strtod(s, &end);
    if (errno || !isfinite(*out))
        return -1;
    *p = end;
    return 0;
}

static FILE *open_proc(const char *name, char *err, size_t len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", hs.proc, name);
    if (!(f = fopen(path, "re")))
        snprintf(err, len, "cannot open %.400s: %s", path, strerror(errno));
    return f;
}

/* The "cpu" line's counters and the number of "cpuN" lines. */
static int read_stat(struct sample *s, char *err, size_t len)
{
    char line[512];
    int seen_total = 0;
    FILE *f = open_proc("stat", err, len);

    if (!f)
        return -1;
    s->cpu_count = 0;
    /* The cpu lines come first; the rest (intr can be very long) is skipped. */
    while (fgets(line, sizeof line, f) && strncmp(line, "cpu", 3) == 0) {
        const char *p = line + 3;
        unsigned long long v[8] = {0};
        int n = 0;

        if (*p >= '0' && *p <= '9') {
            s->cpu_count++;
            continue;
        }
        /* user nice system idle iowait irq softirq steal; guest time is
           already included in user, so guest fields are not added. */
        while (n < 8 && parse_u64(&p, &v[n]) == 0)
            n++;
        if (n < 4)
            break;
        s->cpu.busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        s->cpu.total = s->cpu.busy + v[3] + v[4];
        seen_total = 1;
    }
    fclose(f);
    if (!seen_total || s->cpu_count < 1) {
        snprintf(err, len, "%s/stat: no usable cpu lines", hs.proc);
        return -1;
    }
    return 0;
}

/* MemTotal and MemAvailable (or its pre-3.14 estimate), in bytes. */
static int read_meminfo(struct sample *s, char *err, size_t len)
{
    static const char *const keys[] = {
        "MemTotal:", "MemAvailable:", "MemFree:", "Buffers:", "Cached:"};
    unsigned long long kb[5] = {0};
    int found[5] = {0};
    char line[256];
    FILE *f = open_proc("meminfo", err, len);

    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        for (int i = 0; i < 5; i++) {
            size_t klen = strlen(keys[i]);
            const char *p = line + klen;
            if (strncmp(line, keys[i], klen) == 0 && parse_u64(&p, &kb[i]) == 0)
                found[i] = 1;
        }
    }
    fclose(f);
    if (!found[1] && found[2] && found[3] && found[4]) {
        kb[1] = kb[2] + kb[3] + kb[4];
        found[1] = 1;
    }
    /* A total that does not fit in bytes, or available above total, is
       not a real machine. */
    if (!found[0] || !found[1] || kb[0] == 0 ||
        kb[0] > (unsigned long long)LLONG_MAX / 1024) {
        snprintf(err, len, "%s/meminfo: no usable MemTotal/MemAvailable", hs.proc);
        return -1;
    }
    if (kb[1] > kb[0])
        kb[1] = kb[0];
    s->mem_total = (long long)kb[0] * 1024;
    s->mem_available = (long long)kb[1] * 1024;
    return 0;
}

/* One line of numbers: `n` leading fields of `name`. */
static int read_numbers(const char *name, double *out, int n, char *err, size_t len)
{
    char line[256];
    const char *p = line;
    FILE *f = open_proc(name, err, len);
    int ok;

    if (!f)
        return -1;
    ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    for (int i = 0; ok && i < n; i++)
        ok = parse_num(&p, &out[i]) == 0;
    if (!ok) {
        snprintf(err, len, "%s/%s: not in the expected format", hs.proc, name);
        return -1;
    }
    return 0;
}

static int read_sample(struct sample *s, char *err, size_t len)
{
    if (read_stat(s, err, len) < 0 || read_meminfo(s, err, len) < 0 ||
        read_numbers("loadavg", s->load, 3, err, len) < 0 ||
        read_numbers("uptime", &s->uptime, 1, err, len) < 0)
        return -1;
    return 0;
}

/* ---- building the message ------------------------------------------------------ */

/* part / whole in percent, to two decimals as docker_stats' figures: the
   precision /proc's counters give, and what the history store keeps in
   about 2 bytes a sample (a full-precision double takes 8). */
static double percent(double part, double whole)
{
    return round(100.0 * part / whole * 100.0) / 100.0;
}

/* Busy share since the previous read, or NULL when there is none. */
static json_t *cpu_percent(const struct cpu_times *now)
{
    unsigned long long dtotal, dbusy;

    if (!hs.have_prev || now->total <= hs.prev.total || now->busy < hs.prev.busy)
        return NULL;
    dtotal = now->total - hs.prev.total;
    dbusy = now->busy - hs.prev.busy;
    if (dbusy > dtotal)
        return NULL;
    return json_real(percent((double)dbusy, (double)dtotal));
}

/* kernel.hostname of the watched system, else ours; always valid UTF-8. */
static json_t *hostname(void)
{
    char name[256] = "";
    char err[64];
    FILE *f = open_proc("sys/kernel/hostname", err, sizeof err);
    json_t *j = NULL;

    if (f) {
        if (!fgets(name, sizeof name, f))
            name[0] = '\0';
        fclose(f);
        name[strcspn(name, "\r\n")] = '\0';
    }
    if (!name[0] && gethostname(name, sizeof name) < 0)
        name[0] = '\0';
    name[sizeof name - 1] = '\0';
    if (name[0])
        j = json_string(name); /* NULL when not UTF-8 */
    return j ? j : json_string("unknown");
}

static json_t *build_message(const struct sample *s)
{
    char stamp[KM_ISO_LEN];
    long long used = s->mem_total - s->mem_available;

    km_format_iso(km_wall_us(), 3, stamp, sizeof stamp);
    return json_pack(
        "{s:o?, s:I, s:{s:I, s:I, s:I, s:f}, s:{s:f, s:f, s:f}, s:f, "
        "s:o, s:s}",
        "cpu_percent", cpu_percent(&s->cpu), "cpu_count", (json_int_t)s->cpu_count,
        "memory", "total_bytes", (json_int_t)s->mem_total, "available_bytes",
        (json_int_t)s->mem_available, "used_bytes", (json_int_t)used, "used_percent",
        percent((double)used, (double)s->mem_total), "load", "1m", s->load[0], "5m",
        s->load[1], "15m", s->load[2], "uptime_seconds", s->uptime, "hostname",
        hostname(), "timestamp", stamp);
}

/* ---- plugin entry points -------------------------------------------------- */

static void hs_read(void *arg)
{
    struct sample s;
    char err[512];
    json_t *msg;

    if (read_sample(&s, err, sizeof err) < 0) {
        if (!hs.failing)
            hs.host->log(hs.ctx, KM_LOG_WARNING, "%s; no samples until it reads again",
                         err);
        hs.failing = 1;
        return;
    }
    if (hs.failing)
        hs.host->log(hs.ctx, KM_LOG_NOTICE, "reading %s again", hs.proc);
    hs.failing = 0;
    msg = build_message(&s);
    hs.prev = s.cpu;
    hs.have_prev = 1;
    if (!msg) {
        hs.host->log(hs.ctx, KM_LOG_WARNING, "cannot build a message: out of memory?");
        return;
    }
    /* A refusal is logged and counted by the core. */
    hs.host->publish(hs.ctx, hs.topic, msg);
}

/* Takes the cpu baseline; a sample that cannot be read at all at start
   means proc_path is wrong, which the operator should hear about now. */
static int hs_baseline(void)
{
    struct sample s;
    char err[512];

    if (read_sample(&s, err, sizeof err) < 0) {
        hs.host->log(hs.ctx, KM_LOG_ERROR, "%s; check proc_path", err);
        return -1;
    }
    hs.prev = s.cpu;
    hs.have_prev = 1;
    return 0;
}

static int hs_init(struct km_ctx *ctx, const struct km_host *host)
{
    int err = 0;

    memset(&hs, 0, sizeof hs);
    hs.host = host;
    hs.ctx = ctx;
    hs.proc = host->config_string(ctx, "proc_path");
    hs.interval = host->config_double(ctx, "interval");
    if (hs_baseline() < 0)
        return -1;
    if (!(hs.topic = host->topic_declare(ctx, &hs_topics[0], &err))) {
        host->log(ctx, KM_LOG_ERROR, "cannot declare topic host: %s",
                  host->strerror(err));
        return -1;
    }
    if (!(hs.timer = host->timer_add(ctx, hs.interval, KM_TIMER_REPEAT, hs_read, NULL))) {
        host->log(ctx, KM_LOG_ERROR, "cannot add a timer");
        return -1;
    }
    return 0;
}

static int hs_reload(struct km_ctx *ctx)
{
    double interval = hs.host->config_double(ctx, "interval");
    const char *proc = hs.host->config_string(ctx, "proc_path");

    if (strcmp(proc, hs.proc) != 0) {
        const char *old = hs.proc; /* still valid: borrowed until shutdown */
        hs.proc = proc;
        hs.failing = 0;
        if (hs_baseline() < 0) {
            hs.proc = old;
            return -1;
        }
    }
    if (interval != hs.interval) {
        struct km_timer *t =
            hs.host->timer_add(ctx, interval, KM_TIMER_REPEAT, hs_read, NULL);
        if (!t)
            return -1;
        hs.host->timer_del(ctx, hs.timer);
        hs.timer = t;
        hs.interval = interval;
    }
    return 0;
}

static void hs_shutdown(struct km_ctx *ctx)
{
    /* The timer and the topic are the core's to release; nothing else was
       allocated. */
    memset(&hs, 0, sizeof hs);
}

KM_PLUGIN_DEFINE(.name = "host_stats", .version = "1.0",
                 .description = "CPU, memory, load and uptime of the machine (procfs)",
                 .config = config_keys, .init = hs_init, .reload = hs_reload,
                 .shutdown = hs_shutdown, .topics = hs_topics);
