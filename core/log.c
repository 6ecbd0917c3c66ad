/*
 * log.c - one line per event, to stderr (foreground), the journal or syslog.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <katomon/util.h>

#include "log.h"

static struct {
    char ident[32];            /* program name in each line */
    enum km_log_target target; /* stderr or syslog */
    enum km_log_level level;   /* lines above it (less severe) are dropped */
    km_log_hook hook;          /* tests */
    void *hook_arg;            /* passed to hook */
} g_log = {"katomon", KM_LOG_STDERR, KM_LOG_INFO, NULL, NULL};

static const char *const level_names[] = {
    [KM_LOG_ERROR] = "error", [KM_LOG_WARNING] = "warning", [KM_LOG_NOTICE] = "notice",
    [KM_LOG_INFO] = "info",   [KM_LOG_DEBUG] = "debug",
};

/*
 * 1 when stderr is the stream systemd connected to the journal: it sets
 * JOURNAL_STREAM to "DEVICE:INODE" of that stream, and the variable may be
 * inherited by a process whose stderr was redirected since, so both must
 * match (systemd.exec(5), "$JOURNAL_STREAM").
 */
static int km_log_stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void km_log_open(const char *ident, enum km_log_target target, enum km_log_level level)
{
    snprintf(g_log.ident, sizeof g_log.ident, "%s", ident ? ident : "katomon");
    if (target == KM_LOG_STDERR && km_log_stderr_is_journal())
        target = KM_LOG_JOURNAL;
    g_log.target = target;
    g_log.level = level;
    if (target == KM_LOG_SYSLOG)
        openlog(g_log.ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void km_log_close(void)
{
    if (g_log.target == KM_LOG_SYSLOG)
        closelog();
    g_log.target = KM_LOG_STDERR;
}

enum km_log_target km_log_get_target(void)
{
    return g_log.target;
}

void km_log_set_level(enum km_log_level level)
{
    g_log.level = level;
}

enum km_log_level km_log_get_level(void)
{
    return g_log.level;
}

void km_log_set_hook(km_log_hook hook, void *arg)
{
    g_log.hook = hook;
    g_log.hook_arg = arg;
}

const char *km_log_level_name(enum km_log_level level)
{
    if (level < KM_LOG_ERROR || level > KM_LOG_DEBUG)
        return "unknown";
    return level_names[level];
}

int km_log_parse_level(const char *text, enum km_log_level *out)
{
    for (int l = KM_LOG_ERROR; l <= KM_LOG_DEBUG; l++) {
        if (strcasecmp(text, level_names[l]) == 0) {
            *out = (enum km_log_level)l;
            return 0;
        }
    }
    if (strcasecmp(text, "warn") == 0) {
        *out = KM_LOG_WARNING;
        return 0;
    }
    return -1;
}

void km_vlog(enum km_log_level level, const char *prefix, const char *fmt, va_list ap)
{
    char line[1024];
    int n = 0;

    if (level > g_log.level)
        return;
    if (prefix)
        n = snprintf(line, sizeof line, "%s: ", prefix);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    size_t len = strlen(line);
    while (len > 0 && line[len - 1] == '\n')
        line[--len] = '\0';

    if (g_log.hook)
        g_log.hook(level, line, g_log.hook_arg);
    if (g_log.target == KM_LOG_SYSLOG) {
        syslog((int)level, "%s", line);
        return;
    }
    if (g_log.target == KM_LOG_JOURNAL) {
        /* journald adds time, name and pid; the level names the priority */
        fprintf(stderr, "<%d>%s\n", (int)level, line);
        return;
    }
    char stamp[KM_ISO_LEN];
    km_format_iso(km_wall_us(), 0, stamp, sizeof stamp);
    fprintf(stderr, "%s %s[%d] %s: %s\n", stamp, g_log.ident, (int)getpid(),
            km_log_level_name(level), line);
}

void km_log(enum km_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    km_vlog(level, NULL, fmt, ap);
    va_end(ap);
}
