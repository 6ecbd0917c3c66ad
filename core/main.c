/*
 * main.c - the katomon daemon: options, start-up, signals, shut-down.
 *
 * Start-up order: config -> log -> (daemonize) -> pid file -> event loop ->
 * bus (this host's name, max_hosts) -> the core's `hosts` topic (fleet.c)
 * -> plugins -> HTTP/WebSocket server. Shut-down runs it backwards, so a
 * plugin never sees the bus or the loop disappear under it.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "core.h"
#include "fleet.h"
#include "http_client.h"
#include "loader.h"
#include "log.h"
#include "history.h"
#include "notify.h"
#include "selfstats.h"
#include "series.h"
#if __has_include("server.h")
#include "server.h"
#define KM_HAVE_SERVER 1
#endif

#define KM_DEFAULT_CONFIG KM_SYSCONFDIR "/katomon.conf"

/* What the command line asked for. */
struct km_options {
    const char *config_path; /* -c FILE */
    const char *pid_file;    /* --pid-file FILE; overrides [core] pid_file */
    const char *state_dir;   /* --state-dir DIR; overrides [core] state_dir */
    int foreground;          /* -f: stay attached, log to stderr */
    int check_only;          /* --check-config: validate and exit */
    int log_level;           /* -d / --log-level; -1: from the config */
};

/* The running daemon: the shared core plus what only main.c needs. */
struct km_daemon {
    struct km_core core;        /* loop, bus, config, plugins, server */
    struct km_config *boot_cfg; /* config plugins were loaded with; kept until exit,
                                   because plugins borrow strings from it */
    struct km_fleet *fleet;     /* the core's `hosts` topic and its timer */
    struct event *sig_term;     /* SIGTERM */
    struct event *sig_int;      /* SIGINT */
    struct event *sig_hup;      /* SIGHUP: reload */
    char *pid_path;             /* pid file we wrote, to remove at exit */
    int pid_fd;                 /* its descriptor, holding a lock while we run */
    int ready_fd;               /* daemonized: pipe to the waiting parent; -1 */
    int cli_log_level;          /* -l LEVEL, which outranks the file's; -1: none */
    const char *cli_state_dir;  /* --state-dir DIR, which outranks the file's; NULL */
    struct km_notify *watchdog; /* WATCHDOG=1 keep-alive to systemd; NULL: none asked */
};

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: katomon [OPTION]...\n"
        "Live-monitoring daemon for KATO deployments.\n"
        "\n"
        "  -c, --config FILE     read FILE (default %s)\n"
        "  -f, --foreground      stay in the foreground and log to stderr\n"
        "      --check-config    check the config and the plugins it names, then exit\n"
        "                        (0: good; 1: every problem is printed)\n"
        "  -p, --pid-file FILE   write the pid to FILE (overrides [core] pid_file)\n"
        "      --state-dir DIR   keep the state in DIR (overrides [core] state_dir)\n"
        "  -l, --log-level LEVEL error, warning, notice, info or debug\n"
        "  -V, --version         print the version and exit\n"
        "  -h, --help            print this help and exit\n"
        "\n"
        "Signals: SIGTERM/SIGINT stop cleanly; SIGHUP re-reads the config.\n"
        "Under systemd (NOTIFY_SOCKET set) katomon stays in the foreground and\n"
        "reports readiness, reloads, shut-down and a watchdog with sd_notify.\n"
        "Report bugs to <%s>.\n",
        KM_DEFAULT_CONFIG, PACKAGE_BUGREPORT);
}

static int parse_options(int argc, char **argv, struct km_options *o)
{
    enum { OPT_CHECK = 256, OPT_STATE_DIR };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"foreground", no_argument, NULL, 'f'},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"pid-file", required_argument, NULL, 'p'},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"log-level", required_argument, NULL, 'l'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    enum km_log_level lvl;

    *o = (struct km_options){KM_DEFAULT_CONFIG, NULL, NULL, 0, 0, -1};
    while ((c = getopt_long(argc, argv, "c:fp:l:Vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config_path = optarg;
            break;
        case 'f':
            o->foreground = 1;
            break;
        case OPT_CHECK:
            o->check_only = 1;
            break;
        case 'p':
            o->pid_file = optarg;
            break;
        case OPT_STATE_DIR:
            if (optarg[0] != '/') {
                fprintf(stderr, "katomon: --state-dir wants an absolute path, not '%s'\n",
                        optarg);
                return -1;
            }
            o->state_dir = optarg;
            break;
        case 'l':
            if (km_log_parse_level(optarg, &lvl) < 0) {
                fprintf(stderr,
                        "katomon: unknown log level '%s'; use error, warning, notice, "
                        "info or debug\n",
                        optarg);
                return -1;
            }
            o->log_level = (int)lvl;
            break;
        case 'V':
            printf("katomon %s (plugin ABI %d)\n", PACKAGE_VERSION, KM_PLUGIN_ABI);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        default:
            fprintf(stderr, "Try 'katomon --help' for the options.\n");
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "katomon: unexpected argument '%s'; try 'katomon --help'\n",
                argv[optind]);
        return -1;
    }
    return 0;
}

/* ---- pid file ----------------------------------------------------------- */

/* Creates and locks the pid file, so a second instance fails loudly. */
static int pid_file_write(struct km_daemon *d, const char *path)
{
    char buf[32];
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

    if (fd < 0) {
        km_log(KM_LOG_ERROR, "cannot open pid file %s: %s; fix the path or its directory",
               path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        km_log(KM_LOG_ERROR,
               "pid file %s is locked: another katomon is running; stop it first", path);
        close(fd);
        return -1;
    }
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || write(fd, buf, (size_t)n) != n) {
        km_log(KM_LOG_ERROR, "cannot write pid file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    d->pid_fd = fd;
    d->pid_path = strdup(path);
    return 0;
}

static void pid_file_remove(struct km_daemon *d)
{
    if (d->pid_path) {
        unlink(d->pid_path);
        free(d->pid_path);
        d->pid_path = NULL;
    }
    if (d->pid_fd >= 0)
        close(d->pid_fd);
    d->pid_fd = -1;
}

/* ---- daemonizing ------------------------------------------------------------ */

/*
 * Forks into the background. The parent waits on a pipe until the child
 * says start-up succeeded (or failed), so `katomon` run from a shell or an
 * init script exits non-zero when the daemon could not start.
 */
static int daemonize(struct km_daemon *d)
{
    int fds[2];
    char status = 1;

    if (pipe(fds) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0) {
        close(fds[1]);
        if (read(fds[0], &status, 1) != 1)
            status = 1;
        _exit(status);
    }
    close(fds[0]);
    setsid();
    if (chdir("/") < 0)
        return -1;
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO)
            close(null);
    }
    d->ready_fd = fds[1];
    return 0;
}

static void report_ready(struct km_daemon *d, char status)
{
    if (d->ready_fd < 0)
        return;
    if (write(d->ready_fd, &status, 1) != 1) {
        /* parent gone: nothing to tell */
    }
    close(d->ready_fd);
    d->ready_fd = -1;
}

/* ---- reload --------------------------------------------------------------- */

/*
 * The command line outranks the file: --state-dir replaces [core]
 * state_dir in every config read, at start and at each reload, so a
 * reload never sees it "changed". The systemd unit uses it to point the
 * state at StateDirectory= whatever prefix the build was configured with.
 * 0, or -1 when out of memory.
 */
static int apply_cli(const struct km_daemon *d, struct km_config *cfg)
{
    if (!d->cli_state_dir)
        return 0;
    char *dir = strdup(d->cli_state_dir);
    if (!dir)
        return -1;
    free(cfg->state_dir);
    cfg->state_dir = dir;
    return 0;
}

static int str_differs(const char *a, const char *b)
{
    if (!a || !b)
        return a != b;
    return strcmp(a, b) != 0;
}

/* Compares two configs' plugin sections, in order, entry by entry. */
static int plugins_differ(const struct km_config *a, const struct km_config *b)
{
    size_t ia = 0, ib = 0;

    for (;;) {
        while (ia < a->n_sections && strcmp(a->sections[ia]->kind, "plugin") != 0)
            ia++;
        while (ib < b->n_sections && strcmp(b->sections[ib]->kind, "plugin") != 0)
            ib++;
        if (ia == a->n_sections || ib == b->n_sections)
            return (ia == a->n_sections) != (ib == b->n_sections);
        const struct km_conf_section *sa = a->sections[ia++], *sb = b->sections[ib++];
        if (strcmp(sa->name, sb->name) != 0 || sa->n_entries != sb->n_entries)
            return 1;
        for (size_t i = 0; i < sa->n_entries; i++)
            if (strcmp(sa->entries[i].key, sb->entries[i].key) != 0 ||
                strcmp(sa->entries[i].value, sb->entries[i].value) != 0)
                return 1;
    }
}

/* Logs every setting that changed but only takes effect after a restart. */
static void log_restart_needed(const struct km_config *old, const struct km_config *new)
{
    static const char *const hint = "restart katomon to apply it";
#define KM_RESTART_IF(cond, what)                                                        \
    do {                                                                                 \
        if (cond)                                                                        \
            km_log(KM_LOG_WARNING, "reload: %s changed; %s", what, hint);                \
    } while (0)
    KM_RESTART_IF(str_differs(old->plugin_dir, new->plugin_dir), "[core] plugin_dir");
    KM_RESTART_IF(str_differs(old->state_dir, new->state_dir), "[core] state_dir");
    KM_RESTART_IF(str_differs(old->pid_file, new->pid_file), "[core] pid_file");
    /* the bus names this host in every message it sends and the hosts it
       holds: neither changes under a running bus ([core] host_stale does
       apply, fleet.c reads it at every check) */
    KM_RESTART_IF(str_differs(old->host_name, new->host_name), "[core] host_name");
    KM_RESTART_IF(old->max_hosts != new->max_hosts, "[core] max_hosts");
    KM_RESTART_IF(str_differs(old->bind, new->bind) || old->port != new->port,
                  "[http] bind/port");
    KM_RESTART_IF(str_differs(old->web_root, new->web_root), "[http] web_root");
    KM_RESTART_IF(old->max_connections != new->max_connections ||
                      old->max_request_bytes != new->max_request_bytes,
                  "[http] limits");
    KM_RESTART_IF(old->enabled != new->enabled ||
                      old->max_message_bytes != new->max_message_bytes ||
                      old->max_queue_bytes != new->max_queue_bytes ||
                      old->ping_interval != new->ping_interval ||
                      old->idle_timeout != new->idle_timeout,
                  "[websocket] limits");
    KM_RESTART_IF(old->compatible_fleet != new->compatible_fleet,
                  "[websocket] compatible_fleet");
    KM_RESTART_IF(old->history != new->history || old->max_series != new->max_series ||
                      old->flush_interval != new->flush_interval ||
                      memcmp(&old->tiers, &new->tiers, sizeof old->tiers) != 0 ||
                      str_differs(old->history_file, new->history_file),
                  "[history]");
    KM_RESTART_IF(plugins_differ(old, new), "a [plugin] section");
#undef KM_RESTART_IF
}

/*
 * SIGHUP: read the file again. A bad file changes nothing. Otherwise the
 * log level, the server's live settings and the plugins' reload hooks (alert
 * rules) take the new values; everything else is reported as needing a
 * restart.
 */
static void reload_config(struct km_daemon *d)
{
    struct km_problems list = {0};
    struct km_config *cfg = NULL;
    char buf[1400];

    km_config_read(d->core.cfg->path, &cfg, km_problems_add, &list);
    if (cfg && apply_cli(d, cfg) < 0)
        list.errors++; /* out of memory: keep the running config */
    if (list.errors || !cfg) {
        for (size_t i = 0; i < list.n; i++)
            km_log(list.v[i].level, "reload failed: %s",
                   km_problem_format(&list.v[i], 1, buf, sizeof buf));
        km_log(KM_LOG_ERROR,
               "reload failed: %zu error%s in %s; still running with the previous config",
               list.errors, list.errors == 1 ? "" : "s", d->core.cfg->path);
        km_problems_clear(&list);
        km_config_free(cfg);
        return;
    }
    km_problems_clear(&list);
    struct km_config *old = d->core.cfg;
    log_restart_needed(old, cfg);
    km_log_set_level(d->cli_log_level >= 0 ? (enum km_log_level)d->cli_log_level
                                           : cfg->log_level);
    d->core.cfg = cfg;
#ifdef KM_HAVE_SERVER
    if (d->core.server)
        km_server_reload(d->core.server, cfg);
#endif
    km_loader_reload(d->core.loader);
    if (old != d->boot_cfg)
        km_config_free(old);
    km_log(KM_LOG_NOTICE, "reloaded %s", cfg->path);
}

/* ---- signals ------------------------------------------------------------- */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct km_daemon *d = arg;

    if (sig == SIGHUP) {
        km_log(KM_LOG_NOTICE, "SIGHUP: reloading configuration");
        /* systemd shows "reloading" until READY=1, whether or not the new
           file was good: either way the daemon runs and serves again */
        km_notify_reloading();
        reload_config(d);
        km_notify_ready("running");
        return;
    }
    km_log(KM_LOG_NOTICE, "%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    km_notify_stopping();
    event_base_loopexit(d->core.base, NULL);
}

static int add_signals(struct km_daemon *d)
{
    signal(SIGPIPE, SIG_IGN);
    d->sig_term = evsignal_new(d->core.base, SIGTERM, on_signal, d);
    d->sig_int = evsignal_new(d->core.base, SIGINT, on_signal, d);
    d->sig_hup = evsignal_new(d->core.base, SIGHUP, on_signal, d);
    if (!d->sig_term || !d->sig_int || !d->sig_hup)
        return -1;
    if (evsignal_add(d->sig_term, NULL) < 0 || evsignal_add(d->sig_int, NULL) < 0 ||
        evsignal_add(d->sig_hup, NULL) < 0)
        return -1;
    return 0;
}

/* ---- start and stop -------------------------------------------------------- */

/* The history store of [history], over the series registry. 0, or -1
   (logged): only bad options or no memory fail; a bad file does not. */
/* km_series_host_live's predicate: the fleet says who is up. */
static int fleet_host_up(int h, void *arg)
{
    return km_fleet_host_up(arg, h);
}

static int start_history(struct km_core *core)
{
    const struct km_config *cfg = core->cfg;
    struct km_history_opts opts = {.ntiers = cfg->tiers.n,
                                   .flush_interval = cfg->flush_interval};
    char path[4096], err[512];

    if (!cfg->history)
        return 0;
    for (unsigned i = 0; i < cfg->tiers.n && i < KM_HISTORY_TIERS_MAX; i++) {
        opts.tier[i].step = cfg->tiers.t[i].step;
        opts.tier[i].retention = cfg->tiers.t[i].retention;
    }
    if (cfg->history_file)
        opts.path = cfg->history_file;
    else if (snprintf(path, sizeof path, "%s/history.db", cfg->state_dir) <
             (int)sizeof path)
        opts.path = path;
    core->history = km_history_new(core->base, core->series, &opts, err, sizeof err);
    if (!core->history)
        km_log(KM_LOG_ERROR, "history: %s", err);
    return core->history ? 0 : -1;
}

static int start(struct km_daemon *d)
{
    char err[1024];

    d->core.base = event_base_new();
    d->core.bus = km_bus_new();
    d->core.series = km_series_reg_new((size_t)d->core.cfg->max_series);
    if (!d->core.base || !d->core.bus || !d->core.series || add_signals(d) < 0) {
        km_log(KM_LOG_ERROR, "cannot set up the event loop: out of memory?");
        return -1;
    }
    /* the config reader checked the name; the bus may still say no */
    if (km_bus_set_host(d->core.bus, d->core.cfg->host_name) != 0) {
        km_log(KM_LOG_ERROR, "[core] host_name '%s' refused by the bus",
               d->core.cfg->host_name);
        return -1;
    }
    km_bus_set_max_hosts(d->core.bus, (unsigned)d->core.cfg->max_hosts);
    km_series_attach(d->core.series, d->core.bus);
    if (km_selfstats_add(&d->core) < 0 || start_history(&d->core) < 0)
        return -1;
    /* before the plugins: `hosts` is the core's, and a plugin (alert_manager's
       host_down) may subscribe to it in its init */
    if (!(d->fleet = km_fleet_new(&d->core)))
        return -1;
    km_series_host_live(d->core.series, fleet_host_up, d->fleet);
    km_log(KM_LOG_INFO, "this host is '%s' (at most %d hosts, stale after %g s)",
           d->core.cfg->host_name, d->core.cfg->max_hosts, d->core.cfg->host_stale);
    d->core.loader = km_loader_new(&d->core);
    if (!d->core.loader || km_loader_load_all(d->core.loader, err, sizeof err) < 0) {
        km_log(KM_LOG_ERROR, "%s", d->core.loader ? err : "out of memory");
        return -1;
    }
#ifdef KM_HAVE_SERVER
    d->core.server = km_server_start(&d->core, err, sizeof err);
    if (!d->core.server) {
        km_log(KM_LOG_ERROR, "%s", err);
        return -1;
    }
#endif
    return 0;
}

static void stop(struct km_daemon *d)
{
    km_notify_watchdog_free(d->watchdog);
    d->watchdog = NULL;
#ifdef KM_HAVE_SERVER
    if (d->core.server)
        km_server_free(d->core.server);
#endif
    if (d->core.loader)
        km_loader_free(d->core.loader);
    km_fleet_free(d->fleet);
    d->fleet = NULL;
    if (d->core.base)
        km_hc_shutdown(d->core.base); /* the CURLM outlives no loop */
    km_history_free(d->core.history); /* the last write of the file */
    d->core.history = NULL;
    if (d->core.series) {
        km_series_detach(d->core.series);
        km_series_reg_free(d->core.series);
    }
    km_bus_free(d->core.bus);
    if (d->sig_term)
        event_free(d->sig_term);
    if (d->sig_int)
        event_free(d->sig_int);
    if (d->sig_hup)
        event_free(d->sig_hup);
    if (d->core.base)
        event_base_free(d->core.base);
    if (d->core.cfg != d->boot_cfg)
        km_config_free(d->core.cfg);
    km_config_free(d->boot_cfg);
    pid_file_remove(d);
    libevent_global_shutdown();
}

/* Prints every problem of `list` to stderr, in file order, as
   "FILE:LINE: text" (an editor jumps to it). */
static void print_problems(struct km_problems *list)
{
    char buf[2048];

    km_problems_sort(list);
    for (size_t i = 0; i < list->n; i++)
        fprintf(stderr, "%s\n", km_problem_format(&list->v[i], 1, buf, sizeof buf));
    if (list->lost)
        fprintf(stderr, "katomon: out of memory: some problems are not listed\n");
}

/*
 * --check-config: the file, then every enabled plugin it names (opened,
 * not started) with exactly the checks start-up runs. Every problem is
 * printed, not just the first. 0: start-up would accept the file.
 */
static int check_config(const char *path)
{
    struct km_problems list = {0};
    struct km_config *cfg = NULL;
    size_t warnings;

    km_config_read(path, &cfg, km_problems_add, &list);
    if (cfg)
        km_loader_check(cfg, km_problems_add, &list);
    print_problems(&list);
    warnings = list.n - (list.errors < list.n ? list.errors : list.n);
    if (list.errors || !cfg)
        fprintf(stderr, "katomon: %zu error%s in %s; nothing was started\n", list.errors,
                list.errors == 1 ? "" : "s", path);
    else if (warnings)
        printf("%s: configuration OK (%zu warning%s above)\n", path, warnings,
               warnings == 1 ? "" : "s");
    else
        printf("%s: configuration OK\n", path);
    int rc = list.errors || !cfg ? 1 : 0;
    km_problems_clear(&list);
    km_config_free(cfg);
    return rc;
}

/* Reads the file for start-up: every problem printed, NULL on any. */
static struct km_config *read_config(const char *path)
{
    struct km_problems list = {0};
    struct km_config *cfg = NULL;

    km_config_read(path, &cfg, km_problems_add, &list);
    if (list.errors || !cfg) {
        print_problems(&list);
        fprintf(stderr,
                "katomon: %zu error%s in %s; not starting (katomon --check-config -c "
                "FILE checks the plugins' sections too)\n",
                list.errors, list.errors == 1 ? "" : "s", path);
        km_config_free(cfg);
        cfg = NULL;
    }
    km_problems_clear(&list);
    return cfg;
}

int main(int argc, char **argv)
{
    struct km_options opt;
    struct km_daemon d = {.pid_fd = -1, .ready_fd = -1};
    struct km_config *cfg = NULL;

    if (parse_options(argc, argv, &opt) < 0)
        return 2;
    if (opt.check_only) {
        km_log_open("katomon", KM_LOG_STDERR, KM_LOG_WARNING);
        return check_config(opt.config_path);
    }
    if (!(cfg = read_config(opt.config_path)))
        return 1;
    d.core.cfg = d.boot_cfg = cfg;
    d.cli_log_level = opt.log_level;
    d.cli_state_dir = opt.state_dir;
    if (apply_cli(&d, cfg) < 0) {
        fprintf(stderr, "katomon: out of memory\n");
        km_config_free(cfg);
        return 1;
    }
    /* systemd (Type=notify) waits for READY=1 from the process it started:
       a forked child would be someone else */
    if (km_notify_wanted())
        opt.foreground = 1;
    /* the foreground's stderr is the journal under systemd (log.c then
       writes "<N>" priorities); a detached daemon has syslog */
    km_log_open("katomon", opt.foreground ? KM_LOG_STDERR : KM_LOG_SYSLOG,
                opt.log_level >= 0 ? (enum km_log_level)opt.log_level : cfg->log_level);
    if (!opt.foreground && daemonize(&d) < 0) {
        fprintf(stderr, "katomon: cannot go into the background: %s\n", strerror(errno));
        km_config_free(cfg);
        return 1;
    }
    const char *pid_path = opt.pid_file ? opt.pid_file : cfg->pid_file;
    if ((pid_path && pid_file_write(&d, pid_path) < 0) || start(&d) < 0) {
        report_ready(&d, 1);
        stop(&d);
        km_log_close();
        return 1;
    }
    /* listening, plugins loaded: ready; then the watchdog's keep-alive */
    d.watchdog = km_notify_watchdog_start(d.core.base);
    km_log(KM_LOG_NOTICE, "katomon %s started (config %s)", PACKAGE_VERSION, cfg->path);
    report_ready(&d, 0);
    km_notify_ready("running");
    event_base_dispatch(d.core.base);
    stop(&d);
    km_log(KM_LOG_NOTICE, "katomon stopped");
    km_log_close();
    return 0;
}
