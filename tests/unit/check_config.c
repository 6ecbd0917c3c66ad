/*
 * check_config.c - unit tests of the core's config code (core/config.c,
 * confread.c, confcheck.c): katomon.conf as the core reads it.
 *
 * Bad files are written to a fresh temp dir per test, so each test shows
 * the exact lines it feeds and the exact FILE:LINE it expects. The good
 * file is tests/fixtures/config_good.conf; the shipped one etc/katomon.conf
 * (both found via $top_srcdir, set by `make check`). The core does not
 * know the grammar of plugins' sections: alert_manager's [alert NAME] rules
 * are tested in check_alert_rules, the checks across plugins in
 * check_loader.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

/* by path: a plain "config.h" would find autoconf's in the build dir */
#include "../../core/config.h"
#include <katomon/util.h> /* km_host_name_valid */

static char tmpdir[256];      /* this test's scratch directory */
static char path[512];        /* file written by write_conf */
static char err[1024];        /* error text of the last load */
static struct km_config *cfg; /* config of the last load; freed in teardown */

static void setup(void)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/check_config.XXXXXX", base);
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(path, sizeof path, "%s/katomon.conf", tmpdir);
    err[0] = '\0';
    cfg = NULL;
}

static void teardown(void)
{
    km_config_free(cfg);
    cfg = NULL;
    unlink(path);
    rmdir(tmpdir);
}

/* The source tree: $top_srcdir under make check, else SRCDIR or "..". */
static const char *srcdir(void)
{
    if (getenv("top_srcdir"))
        return getenv("top_srcdir");
#ifdef SRCDIR
    return SRCDIR;
#else
    return "..";
#endif
}

static void write_bytes(const char *text, size_t len)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static void write_conf(const char *text)
{
    write_bytes(text, strlen(text));
}

static void load_ok(const char *file)
{
    int rc = km_config_load(file, &cfg, err, sizeof err);
    ck_assert_msg(rc == 0, "load of %s failed: %s", file, err);
    ck_assert_ptr_nonnull(cfg);
}

/* Loads text, expecting an error that starts "PATH:LINE: " and contains
   each of the NULL-terminated hints. */
static void expect_error(const char *text, int line, ...)
{
    char prefix[600];
    struct km_config *c = (struct km_config *)0x1;
    va_list ap;

    write_conf(text);
    ck_assert_int_eq(km_config_load(path, &c, err, sizeof err), -1);
    ck_assert_ptr_null(c);
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
                  "expected prefix '%s', got '%s'", prefix, err);
    va_start(ap, line);
    for (const char *hint; (hint = va_arg(ap, const char *));)
        ck_assert_msg(strstr(err, hint), "expected '%s' in '%s'", hint, err);
    va_end(ap);
}

/* ---- good files ---------------------------------------------------------- */

START_TEST(test_defaults)
{
    cfg = km_config_defaults();
    ck_assert_ptr_nonnull(cfg);
    ck_assert_ptr_null(cfg->path);
    ck_assert_ptr_nonnull(cfg->plugin_dir);
    ck_assert_ptr_nonnull(cfg->state_dir);
    ck_assert_ptr_nonnull(cfg->web_root);
#ifdef KM_PLUGIN_DIR
    ck_assert_str_eq(cfg->plugin_dir, KM_PLUGIN_DIR);
    ck_assert_str_eq(cfg->state_dir, KM_STATE_DIR);
    ck_assert_str_eq(cfg->web_root, KM_WEB_ROOT);
#endif
    ck_assert_ptr_null(cfg->pid_file);
    ck_assert_int_eq(cfg->log_level, KM_LOG_INFO);
    ck_assert_int_eq(cfg->plugin_failure_fatal, 0);
    ck_assert_str_eq(cfg->bind, "127.0.0.1");
    ck_assert_int_eq(cfg->port, 8080);
    ck_assert_ptr_null(cfg->allowed_origins);
    ck_assert_ptr_null(cfg->auth_token);
    ck_assert_int_eq(cfg->max_connections, 10000);
    ck_assert_uint_eq(cfg->max_request_bytes, 64 * 1024);
    ck_assert_int_eq(cfg->enabled, 1);
    ck_assert_double_eq(cfg->update_interval, 3);
    ck_assert_uint_eq(cfg->max_message_bytes, 64 * 1024);
    ck_assert_uint_eq(cfg->max_queue_bytes, 1024 * 1024);
    ck_assert_double_eq(cfg->ping_interval, 30);
    ck_assert_double_eq(cfg->idle_timeout, 120);
    ck_assert_uint_eq(cfg->n_sections, 0);
}
END_TEST

START_TEST(test_empty_file_is_defaults)
{
    struct km_config *d = km_config_defaults();
    write_conf("; nothing but a comment\n\n");
    load_ok(path);
    ck_assert_str_eq(cfg->path, path);
    ck_assert_str_eq(cfg->plugin_dir, d->plugin_dir);
    ck_assert_int_eq(cfg->port, d->port);
    ck_assert_uint_eq(cfg->max_queue_bytes, d->max_queue_bytes);
    ck_assert_uint_eq(cfg->n_sections, 0);
    km_config_free(d);
}
END_TEST

START_TEST(test_good_file)
{
    char file[512];
    snprintf(file, sizeof file, "%s/tests/fixtures/config_good.conf", srcdir());
    load_ok(file);

    ck_assert_str_eq(cfg->plugin_dir, "/opt/km/plugins");
    ck_assert_str_eq(cfg->state_dir, "/var/tmp/km");
    ck_assert_str_eq(cfg->pid_file, "/run/km.pid");
    ck_assert_int_eq(cfg->log_level, KM_LOG_DEBUG);
    ck_assert_int_eq(cfg->plugin_failure_fatal, 1);

    ck_assert_str_eq(cfg->bind, "::1");
    ck_assert_int_eq(cfg->port, 9090);
    ck_assert_str_eq(cfg->web_root, "/opt/km/web");
    ck_assert_str_eq(cfg->allowed_origins, "http://a.example:3000, http://b.example");
    ck_assert_str_eq(cfg->auth_token, "s3cret");
    ck_assert_int_eq(cfg->max_connections, 50);
    ck_assert_uint_eq(cfg->max_request_bytes, 16 * 1024);

    ck_assert_int_eq(cfg->enabled, 0);
    ck_assert_double_eq(cfg->update_interval, 0.5);
    ck_assert_uint_eq(cfg->max_message_bytes, 4096);
    ck_assert_uint_eq(cfg->max_queue_bytes, 2 * 1024 * 1024);
    ck_assert_double_eq(cfg->ping_interval, 0);
    ck_assert_double_eq(cfg->idle_timeout, 600.5);

    /* [plugin] and [alert] sections only, in file order */
    ck_assert_uint_eq(cfg->n_sections, 4);
    const struct km_conf_section *hs = cfg->sections[0];
    ck_assert_str_eq(hs->kind, "plugin");
    ck_assert_str_eq(hs->name, "host_stats");
    ck_assert_str_eq(hs->file, file);
    ck_assert_int_eq(hs->line, 26);
    ck_assert_uint_eq(hs->n_entries, 3);
    ck_assert_str_eq(hs->entries[0].key, "interval");
    ck_assert_str_eq(hs->entries[0].value, "10");
    ck_assert_int_eq(hs->entries[0].line, 27);
    ck_assert_str_eq(km_conf_value(hs, "file"), "/opt/km/plugins/host_stats.so");
    ck_assert_str_eq(km_conf_value(hs, "enabled"), "false");

    const struct km_conf_section *empty = km_config_section(cfg, "plugin", "empty_one");
    ck_assert_ptr_eq(empty, cfg->sections[1]);
    ck_assert_int_eq(empty->line, 31);
    ck_assert_uint_eq(empty->n_entries, 0);

    const struct km_conf_section *cpu = km_config_section(cfg, "alert", "cpu");
    ck_assert_ptr_nonnull(cpu);
    ck_assert_int_eq(cpu->line, 33);
    ck_assert_uint_eq(cpu->n_entries, 12);
    ck_assert_str_eq(km_conf_value(cpu, "path"), "containers[*].cpu");
    ck_assert_str_eq(km_conf_value(cpu, "op"), ">=");
    ck_assert_str_eq(km_conf_value(cpu, "critical"), "90.5");
    /* an indented line continues the value, joined with one space */
    ck_assert_str_eq(km_conf_value(cpu, "message"),
                     "Container {name} uses {value}% CPU, over {threshold}%");
    ck_assert_int_eq(km_conf_entry(cpu, "message")->line, 45);

    const struct km_conf_section *down = cfg->sections[3];
    ck_assert_str_eq(down->name, "down");
    ck_assert_str_eq(km_conf_value(down, "match"), "status != running");
    ck_assert_ptr_null(km_conf_value(down, "warning"));
}
END_TEST

START_TEST(test_shipped_conf)
{
    char file[512];
    static const char *const alerts[][4] = {
        /* name, topic, path, warning */
        {"high_cpu", "containers", "aggregated.total_cpu_percent", "80"},
        {"high_memory", "containers", "aggregated.total_memory_percent", "85"},
        {"high_error_rate", "metrics", "performance.error_rate", "0.05"},
        {"container_down", "containers", "containers[*]", NULL},
    };
    static const char *const criticals[] = {"90", "95", "0.10", NULL};

    snprintf(file, sizeof file, "%s/etc/katomon.conf", srcdir());
    load_ok(file);
    ck_assert_int_eq(cfg->port, 8080);
    ck_assert_str_eq(cfg->bind, "127.0.0.1");
    ck_assert_int_eq(cfg->enabled, 1);

    const struct km_conf_section *hs = km_config_section(cfg, "plugin", "host_stats");
    ck_assert_ptr_nonnull(hs);
    ck_assert_str_eq(km_conf_value(hs, "interval"), "5");
    /* the collectors, kato_api and the alert manager load by default, in this order;
       the webhook needs a URL, so it stays commented out */
    static const char *const loaded[] = {"host_stats",   "docker_stats",
                                         "kato_metrics", "session_events",
                                         "kato_api",     "alert_manager"};
    size_t n_plugins = 0;
    for (size_t i = 0; i < cfg->n_sections; i++)
        if (strcmp(cfg->sections[i]->kind, "plugin") == 0) {
            ck_assert_uint_lt(n_plugins, 6);
            ck_assert_str_eq(cfg->sections[i]->name, loaded[n_plugins++]);
        }
    ck_assert_uint_eq(n_plugins, 6);
    ck_assert_ptr_null(km_config_section(cfg, "plugin", "alert_webhook"));

    for (size_t i = 0; i < 4; i++) {
        const struct km_conf_section *a = km_config_section(cfg, "alert", alerts[i][0]);
        ck_assert_msg(a != NULL, "no [alert %s]", alerts[i][0]);
        ck_assert_str_eq(km_conf_value(a, "topic"), alerts[i][1]);
        ck_assert_str_eq(km_conf_value(a, "path"), alerts[i][2]);
        ck_assert_str_eq(km_conf_value(a, "cooldown"), "60");
        if (alerts[i][3]) {
            ck_assert_str_eq(km_conf_value(a, "warning"), alerts[i][3]);
            ck_assert_str_eq(km_conf_value(a, "critical"), criticals[i]);
        }
    }
    const struct km_conf_section *down =
        km_config_section(cfg, "alert", "container_down");
    ck_assert_str_eq(km_conf_value(down, "match"),
                     "status != running || health == unhealthy");
    ck_assert_str_eq(km_conf_value(down, "level"), "error");
    ck_assert_str_eq(km_conf_value(down, "name_field"), "name");
    ck_assert_uint_eq(cfg->n_sections, 10); /* 6 plugins, 4 alert rules */
}
END_TEST

START_TEST(test_empty_sections_recorded)
{
    write_conf("[plugin host_stats]\n"
               "[plugin other-one] ; comment\n"
               "\n"
               "[core]\n");
    load_ok(path);
    ck_assert_uint_eq(cfg->n_sections, 2);
    ck_assert_str_eq(cfg->sections[0]->name, "host_stats");
    ck_assert_int_eq(cfg->sections[0]->line, 1);
    ck_assert_uint_eq(cfg->sections[0]->n_entries, 0);
    ck_assert_str_eq(cfg->sections[1]->name, "other-one");
    ck_assert_int_eq(cfg->sections[1]->line, 2);
    ck_assert_ptr_null(km_config_section(cfg, "core", ""));
}
END_TEST

START_TEST(test_syntax_variants)
{
    /* BOM, CRLF, "key: value", spacing in headers, inline comments, empty
       optional strings, the longest line that fits */
    char text[1024];
    char long_line[300];
    memset(long_line, 'x', sizeof long_line);
    memcpy(long_line, ";", 1);
    long_line[197] = '\0';
    snprintf(text, sizeof text,
             "\xEF\xBB\xBF[ core ]\r\n"
             "pid_file =\r\n"
             "log_level: warning ; why\r\n"
             "%s\n"
             "[plugin\t  a_b ]\n"
             "key = a;b ; the first ; is part of the value\n"
             "[http]\n"
             "auth_token =\n",
             long_line);
    write_conf(text);
    load_ok(path);
    ck_assert_ptr_null(cfg->pid_file);
    ck_assert_ptr_null(cfg->auth_token);
    ck_assert_int_eq(cfg->log_level, KM_LOG_WARNING);
    const struct km_conf_section *sec = km_config_section(cfg, "plugin", "a_b");
    ck_assert_ptr_nonnull(sec);
    ck_assert_int_eq(sec->line, 5);
    ck_assert_str_eq(km_conf_value(sec, "key"), "a;b");
}
END_TEST

START_TEST(test_continuation_rechecked)
{
    /* a continued value is checked as a whole */
    expect_error("[http]\n"
                 "port = 80\n"
                 "   80\n",
                 3, "bad value `80 80` for `port` in [http] (continued from line 2)",
                 "expected an integer from 0 to 65535", NULL);
}
END_TEST

START_TEST(test_indented_key)
{
    expect_error("[http]\n"
                 "port = 80\n"
                 "\n"
                 "    bind = 0.0.0.0\n",
                 4, "would continue the value of `port` (line 2)",
                 "remove the indentation", NULL);
}
END_TEST

/* ---- one test per kind of bad line --------------------------------------- */

START_TEST(test_err_unknown_section)
{
    expect_error(
        "[core]\n\n[webscoket]\n", 3, "unknown section [webscoket];",
        "did you mean [websocket]?",
        "the core's sections are [core], [http], [websocket], [history], [plugin NAME]",
        NULL);
    /* an unnamed kind the core does not know cannot be a plugin's either */
    expect_error("[alert]\n", 1, "unknown section [alert]:",
                 "a plugin's own sections take a name: [alert NAME]", NULL);
    expect_error("[a/b c]\n", 1, "unknown section [a/b]", NULL);
}
END_TEST

START_TEST(test_err_unknown_key)
{
    expect_error("[http]\nprot = 80\n", 2, "unknown key `prot` in [http];",
                 "did you mean `port`?", "valid keys are: bind, port, web_root", NULL);
    /* no near miss: no suggestion */
    expect_error("[core]\nzzzzzz = 1\n", 2, "unknown key `zzzzzz` in [core]; valid keys",
                 NULL);
    ck_assert_ptr_null(strstr(err, "did you mean"));
}
END_TEST

START_TEST(test_err_bad_int)
{
    expect_error("[http]\nport = 80x\n", 2, "bad value `80x` for `port` in [http]",
                 "expected an integer from 0 to 65535", NULL);
    expect_error("[http]\nmax_connections = 1.5\n", 2, "expected an integer >= 1", NULL);
}
END_TEST

START_TEST(test_err_out_of_range)
{
    expect_error("[http]\nport = 65536\n", 2, "bad value `65536` for `port`",
                 "from 0 to 65535", NULL);
    expect_error("[http]\nmax_connections = 0\n", 2,
                 "bad value `0` for `max_connections`", NULL);
    expect_error("[websocket]\nupdate_interval = 0\n", 2,
                 "expected a number of seconds > 0 and <= 3600", NULL);
    expect_error("[websocket]\nping_interval = -1\n", 2,
                 "expected a number of seconds from 0 to 86400", NULL);
    expect_error("[websocket]\nmax_queue_bytes = 2G\n", 2,
                 "expected a size in bytes from 1 to 1G", "suffix k, M or G", NULL);
    expect_error("[http]\nmax_request_bytes = 12Q\n", 2, "bad value `12Q`", NULL);
    expect_error("[http]\nmax_request_bytes = 64kB\n", 2, "bad value `64kB`", NULL);
}
END_TEST

START_TEST(test_err_bad_bool)
{
    expect_error("[websocket]\nenabled = maybe\n", 2, "bad value `maybe` for `enabled`",
                 "expected true or false (also yes/no, on/off, 1/0)", NULL);
    expect_error("[plugin p]\nenabled = 2\n", 2, "for `enabled` in [plugin p]", NULL);
}
END_TEST

START_TEST(test_err_bad_log_level)
{
    expect_error("[core]\nlog_level = verbose\n", 2,
                 "bad value `verbose` for `log_level`",
                 "one of error, warning, notice, info, debug", NULL);
}
END_TEST

START_TEST(test_err_empty_required)
{
    expect_error("[http]\nbind =\n", 2,
                 "`bind` in [http] is empty: expected a non-empty value", NULL);
}
END_TEST

START_TEST(test_err_duplicate_plugin)
{
    char want[1200];
    expect_error("[plugin docker_stats]\n"
                 "interval = 3\n"
                 "\n"
                 "[plugin docker_stats]\n",
                 4, NULL);
    snprintf(want, sizeof want,
             "%s:4: [plugin docker_stats] already defined at line 1; remove one", path);
    ck_assert_str_eq(err, want);
    expect_error("[core]\n[http]\n[core]\n", 3, "[core] already defined at line 1", NULL);
}
END_TEST

START_TEST(test_err_duplicate_key)
{
    expect_error("[http]\nport = 1\nbind = x\nport = 2\n", 4,
                 "`port` already set at line 2 in [http]; remove one", NULL);
    expect_error("[plugin p]\nurl = a\nurl = b\n", 3, "`url` already set at line 2",
                 NULL);
}
END_TEST

START_TEST(test_err_key_outside_section)
{
    expect_error("; top\nport = 80\n[http]\n", 2, "`port` is outside any section",
                 "put it under [http]", NULL);
    expect_error("foo = 1\n", 1, "outside any section", "e.g. [core]", NULL);
}
END_TEST

START_TEST(test_err_section_name)
{
    expect_error("[plugin]\n", 1, "[plugin] needs a name: write [plugin NAME]",
                 "[plugin host_stats]", NULL);
    expect_error("[alert   ]\n", 1, "unknown section [alert]", "[alert NAME]", NULL);
    expect_error("[alert x/y]\n", 1, "bad name `x/y` in [alert x/y]", NULL);
    expect_error("[plugin a/b]\n", 1, "bad name `a/b` in [plugin a/b]",
                 "letters, digits, '_' and '-'", NULL);
    expect_error("[plugin a b]\n", 1, "bad name `a b`", NULL);
    expect_error("[core main]\n", 1, "[core] takes no name", NULL);
    expect_error("[core] x\n", 1, "unexpected text `x` after ']'", NULL);
}
END_TEST

START_TEST(test_err_long_line)
{
    char text[512];
    char value[260];
    memset(value, 'a', sizeof value);
    value[230] = '\0';
    snprintf(text, sizeof text, "[http]\n; fine\nauth_token = %s\nport = 1\n", value);
    expect_error(text, 3, "line is 243 characters long; at most 197 fit",
                 "continue a long value on the next line, indented", NULL);
}
END_TEST

START_TEST(test_err_syntax)
{
    expect_error(
        "[core]\nlog_level info\n", 2, "syntax error:",
        "expected `key = value`, a [section] or a ; comment, got `log_level info`", NULL);
    expect_error("[core]\n\n[http\nport = 1\n", 3, "syntax error:", "closing ']'", NULL);
    /* the first error wins, even when a later line fails on its own */
    expect_error("[core]\nnonsense\n[bogus]\n", 2, "syntax error", NULL);
}
END_TEST

START_TEST(test_err_no_key)
{
    expect_error("[core]\n= value\n", 2, "a value without a key", NULL);
}
END_TEST

START_TEST(test_err_missing_file)
{
    char want[1200];
    struct km_config *c = NULL;
    snprintf(path, sizeof path, "%s/nope.conf", tmpdir);
    ck_assert_int_eq(km_config_load(path, &c, err, sizeof err), -1);
    ck_assert_ptr_null(c);
    snprintf(
        want, sizeof want,
        "%s: cannot open: No such file or directory; pass the right path with -c FILE",
        path);
    ck_assert_str_eq(err, want);
    /* a directory opens, but cannot be read */
    ck_assert_int_eq(km_config_load(tmpdir, &c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "cannot read: Is a directory"), "%s", err);
}
END_TEST

START_TEST(test_err_nul_byte)
{
    write_bytes("[core]\nlog_\0level = info\n", 25);
    ck_assert_int_eq(km_config_load(path, &cfg, err, sizeof err), -1);
    ck_assert_msg(strstr(err, ":2: line contains a NUL byte"), "%s", err);
}
END_TEST

/* ---- every problem at once ---------------------------------------------- */

/* Problems of one km_config_read. */
static struct km_problems seen;

/* Reads text with km_config_read into cfg, collecting into `seen`. */
static int read_all(const char *text)
{
    km_problems_clear(&seen);
    km_config_free(cfg);
    cfg = NULL;
    write_conf(text);
    int n = km_config_read(path, &cfg, km_problems_add, &seen);
    ck_assert_ptr_nonnull(cfg); /* even with problems: what could be read */
    ck_assert_int_eq((int)seen.errors, n);
    return n;
}

/* Problem i is at line and contains hint. */
static void seen_at(size_t i, int line, const char *hint)
{
    ck_assert_uint_lt(i, seen.n);
    ck_assert_str_eq(seen.v[i].file, path);
    ck_assert_msg(seen.v[i].line == line && strstr(seen.v[i].text, hint),
                  "problem %zu: want line %d with '%s', got %d: %s", i, line, hint,
                  seen.v[i].line, seen.v[i].text);
}

START_TEST(test_all_problems_at_once)
{
    ck_assert_int_eq(read_all("[core]\n"           /* 1 */
                              "log_level = loud\n" /* 2: bad value */
                              "[http]\n"           /* 3 */
                              "prot = 80\n"        /* 4: unknown key */
                              "   81\n"            /* 5: its continuation */
                              "port = 80\n"        /* 6 */
                              "port = 81\n"        /* 7: duplicate */
                              "[webscoket]\n"      /* 8: unknown section */
                              "enabled = maybe\n"  /* 9: skipped with it */
                              "[plugin p]\n"       /* 10 */
                              "enabled = 2\n"      /* 11: bad value */
                              "x = 1\n"            /* 12: the plugin's */
                              "nonsense\n"         /* 13: syntax */
                              "[widget w]\n"       /* 14: a plugin's kind */
                              "size = big\n"),     /* 15: not the core's */
                     6);
    seen_at(0, 2, "bad value `loud` for `log_level`");
    seen_at(1, 4, "unknown key `prot` in [http]");
    seen_at(2, 7, "`port` already set at line 6");
    seen_at(3, 8, "unknown section [webscoket]");
    seen_at(4, 11, "for `enabled` in [plugin p]");
    seen_at(5, 13, "syntax error:");
    /* what was right is there: the sections, and the values */
    ck_assert_int_eq(cfg->port, 80);
    ck_assert_uint_eq(cfg->n_sections, 2);
    ck_assert_str_eq(km_conf_value(km_config_section(cfg, "plugin", "p"), "x"), "1");
    ck_assert_str_eq(km_conf_value(km_config_section(cfg, "widget", "w"), "size"), "big");
    km_problems_clear(&seen);
}
END_TEST

START_TEST(test_reading_goes_on)
{
    char text[600], value[300];

    /* after an over-long line and a NUL byte */
    memset(value, 'a', sizeof value);
    value[250] = '\0';
    snprintf(text, sizeof text, "[http]\nauth_token = %s\nport = x\n", value);
    ck_assert_int_eq(read_all(text), 2);
    seen_at(0, 2, "characters long");
    seen_at(1, 3, "bad value `x` for `port`");
    write_bytes("[core]\nlog_\0level = info\nlog_level = x\n", 39);
    km_problems_clear(&seen);
    km_config_free(cfg);
    ck_assert_int_eq(km_config_read(path, &cfg, km_problems_add, &seen), 2);
    seen_at(0, 2, "NUL byte");
    seen_at(1, 3, "bad value `x`");
    /* a header without ']': its lines would land in the section before */
    ck_assert_int_eq(read_all("[http]\nport = 1\n[core\nport = 2\n[http]\n"), 2);
    seen_at(0, 3, "closing ']'");
    seen_at(1, 5, "[http] already defined at line 1");
    ck_assert_int_eq(cfg->port, 1);
    km_problems_clear(&seen);
}
END_TEST

START_TEST(test_too_many_errors)
{
    char text[4096] = "[core]\n";
    for (int i = 0; i < 150; i++)
        strcat(text, "x\n");
    ck_assert_int_eq(read_all(text), 101);
    seen_at(100, 101, "too many errors; stopping here");
    km_problems_clear(&seen);
}
END_TEST

START_TEST(test_plugin_kinds_kept)
{
    /* the core checks no key of a plugin's kind; the loader hands them over */
    write_conf("[alert high]\ntopic = Bad!\nanything = goes\n"
               "[widget w-1]\nsize = 3\n\n[plugin p]\n");
    load_ok(path);
    ck_assert_uint_eq(cfg->n_sections, 3);
    ck_assert_str_eq(cfg->sections[0]->kind, "alert");
    ck_assert_str_eq(cfg->sections[0]->name, "high");
    ck_assert_uint_eq(cfg->sections[0]->n_entries, 2);
    ck_assert_str_eq(cfg->sections[1]->kind, "widget");
    ck_assert_int_eq(cfg->sections[1]->line, 4);
    ck_assert_int_eq(km_config_core_kind("widget"), 0);
    ck_assert_int_eq(km_config_core_kind("plugin"), 1);
    ck_assert_int_eq(km_config_core_kind("websocket"), 1);
    /* ... but duplicates are still the reader's */
    expect_error("[widget a]\n[widget a]\n", 2, "[widget a] already defined at line 1",
                 NULL);
    expect_error("[widget a]\nx = 1\nx = 2\n", 3, "`x` already set at line 2", NULL);
}
END_TEST

START_TEST(test_problem_list)
{
    struct km_problems l = {0};
    char buf[256];

    km_problems_add(&l, KM_LOG_ERROR, "f.conf", 9, "nine");
    km_problems_add(&l, KM_LOG_WARNING, "f.conf", 2, "two");
    km_problems_add(&l, KM_LOG_ERROR, "f.conf", 9, "nine again");
    km_problems_add(&l, KM_LOG_ERROR, "f.conf", 0, "the file");
    ck_assert_uint_eq(l.n, 4);
    ck_assert_uint_eq(l.errors, 3);
    km_problems_sort(&l);
    ck_assert_str_eq(km_problem_format(&l.v[0], 1, buf, sizeof buf), "f.conf: the file");
    ck_assert_str_eq(km_problem_format(&l.v[1], 1, buf, sizeof buf),
                     "f.conf:2: warning: two");
    ck_assert_str_eq(km_problem_format(&l.v[1], 0, buf, sizeof buf), "f.conf:2: two");
    ck_assert_str_eq(l.v[2].text, "nine"); /* stable */
    ck_assert_str_eq(l.v[3].text, "nine again");
    km_problems_clear(&l);
    ck_assert_uint_eq(l.n, 0);
}
END_TEST

/* ---- km_config_check_keys -------------------------------------------------- */

static const struct km_conf_key plugin_keys[] = {
    {"interval", KM_CONF_DOUBLE, "5", 1, 3600, "seconds between samples"},
    {"retries", KM_CONF_INT, "3", 0, 10, "tries per sample"},
    {"url", KM_CONF_STRING, NULL, 0, 0, "where to ask"},
    {"verbose", KM_CONF_BOOL, "false", 0, 0, "log every sample"},
    {"offset", KM_CONF_INT, "0", 0, 0, "unbounded"},
    {NULL, KM_CONF_STRING, NULL, 0, 0, NULL},
};

static const struct km_conf_section *plugin_section(const char *body)
{
    char text[512];
    snprintf(text, sizeof text, "[plugin p]\n%s", body);
    write_conf(text);
    load_ok(path);
    return km_config_section(cfg, "plugin", "p");
}

/* Runs km_config_check_keys on sec, collecting into `seen`. */
static size_t check_keys(const struct km_conf_section *sec,
                         const struct km_conf_key *keys)
{
    km_problems_clear(&seen);
    size_t n = km_config_check_keys(sec, keys, km_problems_add, &seen);
    ck_assert_uint_eq(n, seen.n);
    return n;
}

START_TEST(test_check_keys_ok)
{
    const struct km_conf_section *sec =
        plugin_section("interval = 2.5\nretries = 10\nurl =\nverbose = On\n"
                       "offset = -99999\nfile = p.so\nenabled = yes\ncollect = no\n");
    ck_assert_uint_eq(check_keys(sec, plugin_keys), 0);
}
END_TEST

START_TEST(test_check_keys_unknown)
{
    char want[1200];
    const struct km_conf_section *sec = plugin_section("interval = 2\nintervall = 3\n");
    ck_assert_uint_eq(check_keys(sec, plugin_keys), 1);
    snprintf(want, sizeof want,
             "unknown key `intervall` in [plugin p]; did you mean `interval`? p takes: "
             "interval, retries, url, verbose, offset (and file, enabled, collect)");
    ck_assert_str_eq(seen.v[0].text, want);
    ck_assert_int_eq(seen.v[0].line, 3);
    ck_assert_str_eq(seen.v[0].file, path);
    /* a plugin without keys: every key is a problem */
    ck_assert_uint_eq(check_keys(sec, NULL), 2);
    ck_assert_msg(strstr(seen.v[0].text,
                         "unknown key `interval` in [plugin p]; p takes no keys besides "
                         "file, enabled and collect"),
                  "%s", seen.v[0].text);
    km_problems_clear(&seen);
}
END_TEST

START_TEST(test_check_keys_kind)
{
    /* a plugin's [KIND NAME]: no core keys, the kind named in the hint */
    write_conf("[widget w]\nsize = 11\nfile = x\ncolour = red\n");
    load_ok(path);
    ck_assert_uint_eq(check_keys(km_config_section(cfg, "widget", "w"), plugin_keys), 3);
    ck_assert_msg(strstr(seen.v[0].text, "bad value `11` for `size`") ||
                      strstr(seen.v[0].text, "unknown key `size`"),
                  "%s", seen.v[0].text);
    ck_assert_int_eq(seen.v[1].line, 3); /* `file` is nothing special here */
    ck_assert_msg(strstr(seen.v[2].text, "[widget NAME] takes: interval"), "%s",
                  seen.v[2].text);
    km_problems_clear(&seen);
}
END_TEST

START_TEST(test_check_keys_bad_values)
{
    static const struct {
        const char *body; /* section body */
        const char *want; /* expected in the error */
    } cases[] = {
        {"retries = 1.5\n", "bad value `1.5` for `retries` in [plugin p]: expected an "
                            "integer from 0 to 10 (tries per sample)"},
        {"retries = 11\n", "expected an integer from 0 to 10"},
        {"retries = -1\n", "bad value `-1` for `retries`"},
        {"interval = 0.5\n",
         "expected a number from 1 to 3600 (seconds between samples)"},
        {"interval = fast\n", "bad value `fast` for `interval`"},
        {"verbose = 2\n", "expected true or false"},
        {"offset = 1e3\n", "expected an integer (unbounded)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct km_conf_section *sec = plugin_section(cases[i].body);
        ck_assert_uint_eq(check_keys(sec, plugin_keys), 1);
        ck_assert_msg(strstr(seen.v[0].text, cases[i].want), "case %zu: '%s' not in '%s'",
                      i, cases[i].want, seen.v[0].text);
        ck_assert_int_eq(seen.v[0].line, 2);
        km_config_free(cfg);
        cfg = NULL;
    }
    /* every bad key of a section, not the first only */
    ck_assert_uint_eq(
        check_keys(plugin_section("retries = x\nbogus = 1\nverbose = 2\n"), plugin_keys),
        3);
    km_problems_clear(&seen);
}
END_TEST

/* ---- parse helpers and lookups ---------------------------------------------- */

START_TEST(test_parse_bool)
{
    static const char *const yes[] = {"true", "TRUE", "Yes", "on", "1"};
    static const char *const no[] = {"false", "No", "OFF", "0"};
    static const char *const bad[] = {"", "2", "y", "tru", "true ", " yes", "enable"};
    int v;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        v = -1;
        ck_assert_int_eq(km_parse_bool(yes[i], &v), 0);
        ck_assert_int_eq(v, 1);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        v = -1;
        ck_assert_int_eq(km_parse_bool(no[i], &v), 0);
        ck_assert_int_eq(v, 0);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(km_parse_bool(bad[i], &v) == -1, "'%s' accepted", bad[i]);
    ck_assert_int_eq(km_parse_bool(NULL, &v), -1);
}
END_TEST

START_TEST(test_parse_int)
{
    static const char *const bad[] = {"",
                                      " 1",
                                      "1 ",
                                      "1x",
                                      "x1",
                                      "0x10",
                                      "1.0",
                                      "+",
                                      "-",
                                      "1e3",
                                      "9223372036854775808",
                                      "-9223372036854775809"};
    long long v;
    ck_assert_int_eq(km_parse_int("42", &v), 0);
    ck_assert_int_eq(v, 42);
    ck_assert_int_eq(km_parse_int("-7", &v), 0);
    ck_assert_int_eq(v, -7);
    ck_assert_int_eq(km_parse_int("+7", &v), 0);
    ck_assert_int_eq(v, 7);
    ck_assert_int_eq(km_parse_int("9223372036854775807", &v), 0);
    ck_assert(v == 9223372036854775807LL);
    v = 5;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(km_parse_int(bad[i], &v) == -1, "'%s' accepted", bad[i]);
    ck_assert_int_eq(v, 5); /* untouched on error */
    ck_assert_int_eq(km_parse_int(NULL, &v), -1);
}
END_TEST

START_TEST(test_parse_double)
{
    static const char *const bad[] = {"",    " 1",   "1 ",   "1x",    "nan",
                                      "inf", "-inf", "0x10", "1e400", "1e-400",
                                      ".",   "e3",   "1,5"};
    double v;
    ck_assert_int_eq(km_parse_double("2.5", &v), 0);
    ck_assert_double_eq(v, 2.5);
    ck_assert_int_eq(km_parse_double("-1e3", &v), 0);
    ck_assert_double_eq(v, -1000);
    ck_assert_int_eq(km_parse_double(".5", &v), 0);
    ck_assert_double_eq(v, 0.5);
    ck_assert_int_eq(km_parse_double("7", &v), 0);
    ck_assert_double_eq(v, 7);
    v = 3;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(km_parse_double(bad[i], &v) == -1, "'%s' accepted", bad[i]);
    ck_assert_double_eq(v, 3);
    ck_assert_int_eq(km_parse_double(NULL, &v), -1);
}
END_TEST

START_TEST(test_parse_duration)
{
    static const char *const bad[] = {"", "m", "1x", "1 m", "5mm", "nan", "1e400h"};
    double v;
    ck_assert_int_eq(km_parse_duration("90", &v), 0);
    ck_assert_double_eq(v, 90);
    ck_assert_int_eq(km_parse_duration("1.5s", &v), 0);
    ck_assert_double_eq(v, 1.5);
    ck_assert_int_eq(km_parse_duration("15m", &v), 0);
    ck_assert_double_eq(v, 900);
    ck_assert_int_eq(km_parse_duration("7d", &v), 0);
    ck_assert_double_eq(v, 604800);
    ck_assert_int_eq(km_parse_duration("2w", &v), 0);
    ck_assert_double_eq(v, 1209600);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(km_parse_duration(bad[i], &v) == -1, "'%s' accepted", bad[i]);
}
END_TEST

START_TEST(test_parse_tiers)
{
    static const char *const bad[] = {
        "",                                /* none */
        "1s",                              /* no retention */
        "0s:1h",                           /* step below 1 s */
        "1s:1s",                           /* retention under two steps */
        "7s:1d",                           /* not a whole number of steps */
        "1m:1h 1s:1d",                     /* steps must grow */
        "2s:1h 3s:1d",                     /* 3 s is no multiple of 2 s */
        "1s:1h 1m:1d 5m:2d 10m:7d 1h:30d", /* five tiers */
        "1s:401d",                         /* too long */
        "1s:30d",                          /* 2,592,000 points */
    };
    struct km_tiers t;
    char why[160];
    ck_assert_int_eq(km_parse_tiers("1s:1h 1m:1d 10m:7d", &t, why, sizeof why), 0);
    ck_assert_uint_eq(t.n, 3);
    ck_assert_double_eq(t.t[0].step, 1);
    ck_assert_double_eq(t.t[0].retention, 3600);
    ck_assert_double_eq(t.t[2].step, 600);
    ck_assert_double_eq(t.t[2].retention, 604800);
    ck_assert_int_eq(km_parse_tiers("5:300,60:86400", &t, why, sizeof why), 0);
    ck_assert_uint_eq(t.n, 2);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        ck_assert_msg(km_parse_tiers(bad[i], &t, why, sizeof why) == -1, "'%s' accepted",
                      bad[i]);
        ck_assert_msg(why[0] != '\0', "'%s': no reason", bad[i]);
    }
}
END_TEST

START_TEST(test_history_section)
{
    write_conf("[history]\nenabled = false\ntiers = 10s:1d 5m:30d\nmax_series = 100\n"
               "flush_interval = 0\nfile = /tmp/h.db\n[http]\nmetrics = no\n");
    load_ok(path);
    ck_assert_int_eq(cfg->history, 0);
    ck_assert_uint_eq(cfg->tiers.n, 2);
    ck_assert_double_eq(cfg->tiers.t[1].step, 300);
    ck_assert_int_eq(cfg->max_series, 100);
    ck_assert_double_eq(cfg->flush_interval, 0);
    ck_assert_str_eq(cfg->history_file, "/tmp/h.db");
    ck_assert_int_eq(cfg->metrics, 0);
    expect_error("[history]\ntiers = 1s:1h 1m\n", 2, "bad value", "tiers",
                 "STEP:RETENTION", NULL);
}
END_TEST

START_TEST(test_history_defaults)
{
    write_conf("[core]\n");
    load_ok(path);
    ck_assert_int_eq(cfg->history, 1);
    ck_assert_uint_eq(cfg->tiers.n, 3);
    ck_assert_int_eq(cfg->max_series, 4096);
    ck_assert_double_eq(cfg->flush_interval, 60);
    ck_assert_ptr_null(cfg->history_file);
    ck_assert_int_eq(cfg->metrics, 1);
}
END_TEST

START_TEST(test_lookups)
{
    write_conf("[plugin a]\nx = 1\n[alert a]\ntopic = t\npath = p\nwarning = 1\n");
    load_ok(path);
    const struct km_conf_section *pa = km_config_section(cfg, "plugin", "a");
    const struct km_conf_section *aa = km_config_section(cfg, "alert", "a");
    ck_assert_ptr_nonnull(pa);
    ck_assert_ptr_nonnull(aa);
    ck_assert_ptr_ne(pa, aa);
    ck_assert_ptr_null(km_config_section(cfg, "plugin", "b"));
    ck_assert_ptr_null(km_config_section(cfg, "http", ""));
    ck_assert_ptr_null(km_config_section(NULL, "plugin", "a"));
    ck_assert_str_eq(km_conf_value(pa, "x"), "1");
    ck_assert_ptr_null(km_conf_value(pa, "y"));
    ck_assert_ptr_null(km_conf_value(NULL, "x"));
    ck_assert_int_eq(km_conf_entry(aa, "warning")->line, 6);
    ck_assert_ptr_null(km_conf_entry(aa, NULL));
    km_config_free(NULL); /* allowed */
}
END_TEST

/* ---- the fleet's keys (issue 15) ------------------------------------------ */

START_TEST(test_fleet_defaults)
{
    char host[128];
    cfg = km_config_defaults();
    ck_assert_ptr_nonnull(cfg);
    ck_assert_str_eq(cfg->host_name, km_config_default_host_name(host, sizeof host));
    ck_assert_int_eq(km_host_name_valid(cfg->host_name), 1);
    ck_assert_int_eq(cfg->max_hosts, 64);
    ck_assert_double_eq(cfg->host_stale, 15);
    ck_assert_double_eq(cfg->host_forget, 3600);
    ck_assert_double_eq(cfg->request_timeout, 30);
    ck_assert_int_eq(cfg->compatible_fleet, KM_FLEET_LOCAL);
    /* a file that does not say keeps them */
    km_config_free(cfg);
    write_conf("[core]\nlog_level = info\n");
    load_ok(path);
    ck_assert_str_eq(cfg->host_name, host);
    ck_assert_int_eq(cfg->max_hosts, 64);
    ck_assert_double_eq(cfg->host_stale, 15);
}
END_TEST

START_TEST(test_fleet_keys)
{
    write_conf("[core]\n"
               "host_name = Web-1.example_2\n"
               "max_hosts = 1024\n"
               "host_stale = 1.5m\n"
               "host_forget = 2h\n"
               "[websocket]\n"
               "compatible_fleet = aggregate\n"
               "[plugin p]\n"
               "collect = false\n");
    load_ok(path);
    ck_assert_str_eq(cfg->host_name, "Web-1.example_2");
    ck_assert_int_eq(cfg->max_hosts, 1024);
    ck_assert_double_eq(cfg->host_stale, 90);
    ck_assert_double_eq(cfg->host_forget, 7200);
    ck_assert_int_eq(cfg->compatible_fleet, KM_FLEET_AGGREGATE);
    ck_assert_str_eq(km_conf_value(km_config_section(cfg, "plugin", "p"), "collect"),
                     "false");
    km_config_free(cfg);
    cfg = NULL;
    /* the edges of each range, and plain seconds */
    write_conf("[core]\nhost_name = x\nmax_hosts = 1\nhost_stale = 1\n"
               "[websocket]\ncompatible_fleet = local\n");
    load_ok(path);
    ck_assert_str_eq(cfg->host_name, "x");
    ck_assert_int_eq(cfg->max_hosts, 1);
    ck_assert_double_eq(cfg->host_stale, 1);
    ck_assert_int_eq(cfg->compatible_fleet, KM_FLEET_LOCAL);
}
END_TEST

START_TEST(test_err_fleet_keys)
{
    char name[80];

    expect_error(
        "[core]\nhost_name = web 1\n", 2, "bad value `web 1` for `host_name` in [core]",
        "expected a host name of 1 to 64 characters from A-Z a-z 0-9 _ . -", NULL);
    expect_error("[core]\n\nhost_name = db:1\n", 3, "bad value `db:1` for `host_name`",
                 NULL);
    expect_error("[core]\nhost_name = *\n", 2, "for `host_name`", NULL);
    expect_error("[core]\nhost_name =\n", 2, "`host_name` in [core] is empty", NULL);
    memset(name, 'a', 65);
    name[65] = '\0';
    char text[200];
    snprintf(text, sizeof text, "[core]\nhost_name = %s\n", name);
    expect_error(text, 2, "for `host_name` in [core]", NULL);
    name[64] = '\0'; /* 64 fits */
    snprintf(text, sizeof text, "[core]\nhost_name = %s\n", name);
    write_conf(text);
    load_ok(path);
    ck_assert_str_eq(cfg->host_name, name);

    expect_error("[core]\nmax_hosts = 0\n", 2, "bad value `0` for `max_hosts` in [core]",
                 "expected an integer from 1 to 1024", NULL);
    expect_error("[core]\nmax_hosts = 1025\n", 2, "for `max_hosts`", NULL);
    expect_error("[core]\nhost_stale = 0.5\n", 2,
                 "bad value `0.5` for `host_stale` in [core]",
                 "expected a duration from 1 to 86400", "unit s, m, h, d", NULL);
    expect_error("[core]\nhost_stale = 2d\n", 2, "for `host_stale`", NULL);
    expect_error("[core]\nhost_stale = 15x\n", 2, "bad value `15x`", NULL);
    expect_error("[websocket]\ncompatible_fleet = all\n", 2,
                 "bad value `all` for `compatible_fleet` in [websocket]",
                 "expected local (compatible clients see this host only) or aggregate",
                 NULL);
    expect_error("[plugin p]\ncollect = perhaps\n", 2,
                 "bad value `perhaps` for `collect` in [plugin p]", NULL);
}
END_TEST

START_TEST(test_host_name_made_valid)
{
    char buf[KM_HOST_NAME_MAX + 1], long_name[200], small[4];

    ck_assert_str_eq(km_config_host_name_from("db_1:prod", buf, sizeof buf), "db_1-prod");
    ck_assert_str_eq(km_config_host_name_from("h\xc3\xa4st", buf, sizeof buf), "h--st");
    ck_assert_str_eq(km_config_host_name_from("", buf, sizeof buf), "localhost");
    ck_assert_str_eq(km_config_host_name_from(NULL, buf, sizeof buf), "localhost");
    memset(long_name, 'b', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    km_config_host_name_from(long_name, buf, sizeof buf);
    ck_assert_uint_eq(strlen(buf), KM_HOST_NAME_MAX);
    ck_assert_int_eq(km_host_name_valid(buf), 1);
    /* a short buffer is cut, never overrun */
    ck_assert_str_eq(km_config_host_name_from("abcdef", small, sizeof small), "abc");
    /* whatever this machine is called, the default is a valid name */
    ck_assert_int_eq(km_host_name_valid(km_config_default_host_name(buf, sizeof buf)), 1);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *good = tcase_create("good");
    TCase *bad = tcase_create("errors");
    TCase *keys = tcase_create("check_keys");
    TCase *parse = tcase_create("parse");

    tcase_add_checked_fixture(good, setup, teardown);
    tcase_add_test(good, test_defaults);
    tcase_add_test(good, test_empty_file_is_defaults);
    tcase_add_test(good, test_good_file);
    tcase_add_test(good, test_shipped_conf);
    tcase_add_test(good, test_empty_sections_recorded);
    tcase_add_test(good, test_syntax_variants);
    tcase_add_test(good, test_plugin_kinds_kept);
    tcase_add_test(good, test_problem_list);
    tcase_add_test(good, test_lookups);
    tcase_add_test(good, test_fleet_defaults);
    tcase_add_test(good, test_fleet_keys);
    tcase_add_test(good, test_history_section);
    tcase_add_test(good, test_history_defaults);
    suite_add_tcase(s, good);

    tcase_add_checked_fixture(bad, setup, teardown);
    tcase_add_test(bad, test_continuation_rechecked);
    tcase_add_test(bad, test_indented_key);
    tcase_add_test(bad, test_err_unknown_section);
    tcase_add_test(bad, test_err_unknown_key);
    tcase_add_test(bad, test_err_bad_int);
    tcase_add_test(bad, test_err_out_of_range);
    tcase_add_test(bad, test_err_bad_bool);
    tcase_add_test(bad, test_err_bad_log_level);
    tcase_add_test(bad, test_err_empty_required);
    tcase_add_test(bad, test_err_duplicate_plugin);
    tcase_add_test(bad, test_err_duplicate_key);
    tcase_add_test(bad, test_err_key_outside_section);
    tcase_add_test(bad, test_err_section_name);
    tcase_add_test(bad, test_err_long_line);
    tcase_add_test(bad, test_err_syntax);
    tcase_add_test(bad, test_err_no_key);
    tcase_add_test(bad, test_err_missing_file);
    tcase_add_test(bad, test_err_nul_byte);
    tcase_add_test(bad, test_all_problems_at_once);
    tcase_add_test(bad, test_reading_goes_on);
    tcase_add_test(bad, test_too_many_errors);
    tcase_add_test(bad, test_err_fleet_keys);
    suite_add_tcase(s, bad);

    tcase_add_checked_fixture(keys, setup, teardown);
    tcase_add_test(keys, test_check_keys_ok);
    tcase_add_test(keys, test_check_keys_unknown);
    tcase_add_test(keys, test_check_keys_kind);
    tcase_add_test(keys, test_check_keys_bad_values);
    suite_add_tcase(s, keys);

    tcase_add_test(parse, test_parse_bool);
    tcase_add_test(parse, test_parse_int);
    tcase_add_test(parse, test_parse_double);
    tcase_add_test(parse, test_parse_duration);
    tcase_add_test(parse, test_parse_tiers);
    tcase_add_test(parse, test_host_name_made_valid);
    suite_add_tcase(s, parse);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
