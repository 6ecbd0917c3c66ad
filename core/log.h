/*
 * log.h - the daemon's log: stderr in the foreground, syslog otherwise.
 *
 * A foreground daemon whose stderr is systemd's journal (JOURNAL_STREAM
 * names it, see systemd.exec(5)) writes "<N>text" lines instead: journald
 * reads N as the line's priority and stamps the time itself.
 */
#ifndef KM_LOG_H
#define KM_LOG_H

#include <stdarg.h>
#include <katomon/plugin.h>

/* Where log lines go. */
enum km_log_target {
    KM_LOG_STDERR,  /* "2026-11-23T02:40:00Z katomon[pid] level: text" on stderr */
    KM_LOG_SYSLOG,  /* syslog(3), facility daemon */
    KM_LOG_JOURNAL, /* "<N>text" on stderr, N the syslog priority (sd-daemon(3)) */
};

/* Hook for tests: sees every line that passes the level filter. */
typedef void (*km_log_hook)(enum km_log_level level, const char *line, void *arg);

/* KM_LOG_STDERR becomes KM_LOG_JOURNAL when stderr is the journal. */
void km_log_open(const char *ident, enum km_log_target target, enum km_log_level level);
enum km_log_target km_log_get_target(void);
void km_log_close(void);
void km_log_set_level(enum km_log_level level);
enum km_log_level km_log_get_level(void);
void km_log_set_hook(km_log_hook hook, void *arg);

/* Logs one line (a trailing newline in fmt is dropped). */
void km_log(enum km_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* As km_log, with "prefix: " before the text (prefix may be NULL). */
void km_vlog(enum km_log_level level, const char *prefix, const char *fmt, va_list ap);

/* "error", "warning", "notice", "info", "debug" <-> enum. parse returns 0 or -1. */
int km_log_parse_level(const char *text, enum km_log_level *out);
const char *km_log_level_name(enum km_log_level level);

#endif /* KM_LOG_H */
