/*
 * check_alert_rules.c - alert_manager's [alert NAME] grammar
 * (plugins/alert_rules.c, compiled into this test).
 *
 * Each case writes a file, reads it with the core's reader (as start-up
 * does) and runs what the loader runs on [alert] sections: the typed keys
 * of am_kinds (km_config_check_keys), then the plugin's check (am_check).
 * Every problem is collected with its line, so a case states the exact
 * line it expects, and that all problems of a file come at once.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

/* by path: a plain "config.h" could find another one first */
#include "../../core/config.h"
#include "../../plugins/alert_rules.h"

#define MAX_PROBLEMS 64

/* One problem reported by the typed keys or the check. */
struct seen {
    int line;        /* its line */
    char text[1024]; /* its text */
};

static char tmpdir[256];                  /* this test's scratch directory */
static char path[512];                    /* file written by run */
static struct km_config *cfg;             /* config of the last run */
static struct seen seen[MAX_PROBLEMS];    /* problems of the last run */
static int n_seen;                        /* how many */
static const struct km_conf_section *own; /* a [plugin alert_manager] for am_check */

static void setup(void)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/check_alert_rules.XXXXXX", base);
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(path, sizeof path, "%s/katomon.conf", tmpdir);
    cfg = NULL;
}

static void teardown(void)
{
    km_config_free(cfg);
    cfg = NULL;
    unlink(path);
    rmdir(tmpdir);
}

static void keep(int line, const char *text)
{
    ck_assert_int_lt(n_seen, MAX_PROBLEMS);
    seen[n_seen].line = line;
    snprintf(seen[n_seen].text, sizeof seen[n_seen].text, "%s", text);
    n_seen++;
}

/* The loader's side: a km_config_report_fn. */
static void core_report(void *arg, enum km_log_level level, const char *file, int line,
                        const char *text)
{
    ck_assert_int_eq(level, KM_LOG_ERROR);
    ck_assert_str_eq(file, path);
    keep(line, text);
}

/* The plugin's side: a km_conf_report, as the loader hands it over. */
static void __attribute__((format(printf, 4, 5)))
plugin_report(void *arg, const struct km_conf_section *sec, int line, const char *fmt,
              ...)
{
    char text[1024];
    va_list ap;

    ck_assert_ptr_nonnull(sec);
    ck_assert_str_eq(sec->kind, "alert");
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    keep(line > 0 ? line : sec->line, text);
}

/* Reads text and checks its [alert] sections; returns the problems. */
static int run(const char *text)
{
    const struct km_conf_section *alerts[128];
    size_t n = 0;
    char err[1024];
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    km_config_free(cfg);
    cfg = NULL;
    n_seen = 0;
    ck_assert_msg(km_config_load(path, &cfg, err, sizeof err) == 0, "%s", err);
    for (size_t i = 0; i < cfg->n_sections; i++) {
        if (strcmp(cfg->sections[i]->kind, am_kinds[0].kind) != 0)
            continue;
        ck_assert_uint_lt(n, 128);
        alerts[n++] = cfg->sections[i];
        km_config_check_keys(cfg->sections[i], am_kinds[0].keys, core_report, NULL);
    }
    own = km_config_section(cfg, "plugin", "alert_manager");
    int typed = n_seen;
    /* check returns what it reported itself */
    ck_assert_int_eq(am_check(own, alerts, n, plugin_report, NULL), n_seen - typed);
    return n_seen;
}

/* A problem at `line` containing every NULL-terminated hint was reported. */
static void expect_at(int line, ...)
{
    for (int i = 0; i < n_seen; i++) {
        va_list ap;
        int all = seen[i].line == line;
        va_start(ap, line);
        for (const char *h; all && (h = va_arg(ap, const char *));)
            all = strstr(seen[i].text, h) != NULL;
        va_end(ap);
        if (all)
            return;
    }
    for (int i = 0; i < n_seen; i++)
        fprintf(stderr, "  seen %d: %s\n", seen[i].line, seen[i].text);
    ck_abort_msg("no problem at line %d with the expected text (%d seen)", line, n_seen);
}

/* text has exactly one problem, at line, with the hints. */
#define EXPECT_ONE(text, line, ...)                                                      \
    do {                                                                                 \
        ck_assert_int_eq(run(text), 1);                                                  \
        expect_at(line, __VA_ARGS__, NULL);                                              \
    } while (0)

/* ---- what is required --------------------------------------------------- */

START_TEST(test_required)
{
    EXPECT_ONE("[alert high_cpu]\npath = a.b\nwarning = 1\n\n[core]\n", 1,
               "[alert high_cpu] has no `topic`; add a line such as topic = containers");
    EXPECT_ONE("[core]\n[alert x]\ntopic = t\nwarning = 1\n", 2,
               "[alert x] has no `path`");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\n", 1, "[alert x] has no threshold",
               "add warning = N and/or critical = N");
}
END_TEST

/* ---- the loader's typed keys of [alert NAME] -------------------------------- */

START_TEST(test_typed_keys)
{
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nwarning = high\n", 4,
               "bad value `high` for `warning` in [alert x]: expected a number");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nwarning = 1\nfor = 0\n", 5,
               "for `for` in [alert x]", "an integer from 1 to");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nwarning = 1\ncooldown = -5\n", 5,
               "for `cooldown`", "a number from 0 to 31536000");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nwarning = 1\nenabled = perhaps\n", 5,
               "expected true or false");
    EXPECT_ONE("[alert x]\ntopic = m\npath = a\nwarning = 1\ntreshold = 3\n", 5,
               "unknown key `treshold` in [alert x];",
               "[alert NAME] takes: enabled, topic, path");
    EXPECT_ONE("[alert x]\ntopic = m\npath = a\nwarnign = 1\ncritical = 2\n", 4,
               "unknown key `warnign`", "did you mean `warning`?");
    /* a bad number is skipped by the check: no "no threshold" on top */
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\ncritical = lots\n", 4, "`critical`");
}
END_TEST

/* ---- values --------------------------------------------------------------- */

START_TEST(test_values)
{
    static const char rule[] = "[alert x]\ntopic = t\npath = a\nwarning = 1\n";
    char text[512];

    EXPECT_ONE("[alert x]\ntopic = Bad!\npath = a\nwarning = 1\n", 2,
               "bad value `Bad!` for `topic`", "a topic name");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a..b\nwarning = 1\n", 3,
               "bad value `a..b` for `path`", "containers[*]");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a[0]\nwarning = 1\n", 3, "for `path`");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nop = =>\nwarning = 1\n", 4,
               "one of >, >=, <, <=");
    snprintf(text, sizeof text, "%stype = {x}\n", rule);
    EXPECT_ONE(text, 5, "for `type`", "no braces");
    /* a long message is written over several lines, joined with a space */
    snprintf(text, sizeof text, "%smessage = %0150d\n    %0149d\n", rule, 0, 0);
    EXPECT_ONE(text, 5, "`message` of [alert x] is 300 characters long; at most 255");
}
END_TEST

START_TEST(test_paths_and_kinds)
{
    /* a threshold rule names one number; a match rule a list */
    EXPECT_ONE("[alert x]\ntopic = t\npath = items[*]\nwarning = 1\n", 3,
               "[alert x] is a threshold rule: its path names one number, without [*]");
    EXPECT_ONE("[alert x]\ntopic = t\npath = items\nmatch = a == b\n", 3,
               "[alert x] is a match rule (match at line 4)", "ends in [*]");
    /* [*] only at the end: the rule would read the outer list only */
    EXPECT_ONE("[alert x]\ntopic = t\npath = items[*].sub[*]\nmatch = a == b\n", 3,
               "bad value `items[*].sub[*]` for `path`");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a[*]\nmatch = s == up\nwarning = 3\n", 5,
               "`warning` belongs to threshold rules", "match at line 4");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nwarning = 3\nlevel = error\n", 5,
               "`level` belongs to match rules");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nwarning = 3\nname_field = n\n", 5,
               "`name_field` belongs to match rules");
}
END_TEST

START_TEST(test_match_grammar)
{
    static const char head[] = "[alert x]\ntopic = t\npath = c[*]\n";
    static const struct {
        const char *match; /* the match line */
        const char *why;   /* expected in the problem */
    } bad[] = {
        {"status running", "a test has no == or !="},
        {"status ==", "a test has no VALUE"},
        {"== up", "FIELD is a member"},
        {"a[*] == up", "FIELD is a member"},
        {"status == up and running", "VALUE is one word"},
        {"status != running | health == x", "joined with ||, not |"},
        {"a == 1 || b == 2 || c == 3 || d == 4 || e == 5", "at most 4 tests"},
        {"a == 1 ||", "a test has no == or !="},
    };
    char text[512];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "%smatch = %s\n", head, bad[i].match);
        EXPECT_ONE(text, 4, "for `match` in [alert x]", bad[i].why);
    }
    snprintf(text, sizeof text, "%smatch = s == up\nlevel = critical\n", head);
    EXPECT_ONE(text, 5, "warning or error");
    snprintf(text, sizeof text, "%smatch = s == up\nname_field = a b\n", head);
    EXPECT_ONE(text, 5, "for `name_field`");
}
END_TEST

START_TEST(test_thresholds)
{
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nwarning = 90\ncritical = 80\n", 5,
               "critical (80) is less severe than warning (90) for op >", "swap them");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nop = <\nwarning = 10\ncritical = 20\n", 6,
               "critical must be <= warning");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nwarning = 80\nclear = 85\n", 5,
               "clear (85) is above warning (80)", "clear must be <= 80");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nop = <=\ncritical = 5\nclear = 1\n", 6,
               "clear (1) is below critical (5)");
}
END_TEST

START_TEST(test_placeholders)
{
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nwarning = 1\nmessage = at {vaule}\n", 5,
               "unknown placeholder {vaule} in `message` of [alert x]",
               "placeholders of a threshold rule are: {value}, {value_pct}, {threshold}");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nwarning = 1\nmessage = {name} hot\n", 5,
               "placeholder {name} means nothing", "a threshold rule");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a[*]\nmatch = s != up\n"
               "message = {name} over {threshold}\n",
               5, "placeholder {threshold} means nothing", "a match rule",
               "{value}, {name}, {matched}, {type}, {level}");
    /* braces that are no {word} are text */
    ck_assert_int_eq(run("[alert x]\ntopic = t\npath = a\nwarning = 1\n"
                         "message = {} { value} {1} {Value} at {value}\n"),
                     0);
}
END_TEST

/* Every problem of a file at once, in file order, from both sides. */
START_TEST(test_all_at_once)
{
    ck_assert_int_eq(run("[alert a]\n"           /* 1 */
                         "topic = Bad\n"         /* 2: topic */
                         "path = x\n"            /* 3 */
                         "warning = 9\n"         /* 4 */
                         "critical = 1\n"        /* 5: less severe */
                         "[alert b]\n"           /* 6: no path */
                         "topic = t\n"           /* 7 */
                         "match = s running\n"   /* 8: match */
                         "colour = red\n"        /* 9: unknown key */
                         "message = {vaule}\n"), /* 10: placeholder */
                     6);
    expect_at(2, "`topic`", NULL);
    expect_at(5, "less severe", NULL);
    expect_at(6, "no `path`", NULL);
    expect_at(8, "`match`", NULL);
    expect_at(9, "unknown key `colour`", NULL);
    expect_at(10, "{vaule}", NULL);
}
END_TEST

START_TEST(test_rule_limit)
{
    char text[16384];
    size_t used = 0;

    for (int i = 0; i < 66; i++)
        used += (size_t)snprintf(text + used, sizeof text - used,
                                 "[alert r%d]\ntopic = t\npath = a\nwarning = 1\n%s", i,
                                 i == 10 ? "enabled = false\n" : "");
    ck_assert_int_eq(run(text), 1); /* 65 enabled: the 65th is one too many */
    expect_at(1 + 4 * 65 + 1, "[alert r65] is enabled rule 65", "evaluates at most 64",
              NULL);
}
END_TEST

/* ---- what the rules are made of ------------------------------------------------ */

static const struct km_conf_section *alert(const char *name)
{
    const struct km_conf_section *s = km_config_section(cfg, "alert", name);
    ck_assert_msg(s != NULL, "no [alert %s]", name);
    return s;
}

START_TEST(test_variants_ok)
{
    struct am_rule r;

    ck_assert_int_eq(run("[alert low_disk]\n"
                         "topic = host\n"
                         "path = disk.free_percent\n"
                         "op = <\n"
                         "warning = 20\n"
                         "critical = 10\n"
                         "clear = 25\n"
                         "for = 3\n"
                         "cooldown = 0.5\n"
                         "[alert only_critical]\n"
                         "topic = host\n"
                         "path = load\n"
                         "critical = 4\n"
                         "enabled = NO\n"
                         "[alert eq]\n"
                         "topic = t.x-y\n"
                         "path = data.items[*]\n"
                         "match = state.phase==done||code != 0\n"
                         "level = warning\n"
                         "name_field = meta.id\n"
                         "type = Phase done!\n"),
                     0);
    ck_assert_int_eq(am_rule_parse(alert("low_disk"), &r, plugin_report, NULL), 0);
    ck_assert_int_eq(r.is_match, 0);
    ck_assert_int_eq(r.op, AM_LT);
    ck_assert(r.has_warning && r.has_critical);
    ck_assert_double_eq(r.warning, 20);
    ck_assert_double_eq(r.critical, 10);
    ck_assert_double_eq(r.clear, 25);
    ck_assert_uint_eq(r.for_n, 3);
    ck_assert_double_eq(r.cooldown, 0.5);
    ck_assert_str_eq(r.type, "low_disk"); /* default: NAME */
    ck_assert_str_eq(r.message, "{type}: {value}");
    ck_assert_int_eq(am_rule_enabled(alert("low_disk")), 1);

    ck_assert_int_eq(am_rule_parse(alert("only_critical"), &r, plugin_report, NULL), 0);
    ck_assert_double_eq(r.clear, 4); /* default: the first threshold */
    ck_assert_uint_eq(r.for_n, 1);
    ck_assert_double_eq(r.cooldown, 60);
    ck_assert_int_eq(am_rule_enabled(alert("only_critical")), 0); /* NO, any case */

    ck_assert_int_eq(am_rule_parse(alert("eq"), &r, plugin_report, NULL), 0);
    ck_assert_int_eq(r.is_match, 1);
    ck_assert_int_eq(r.n_clauses, 2);
    ck_assert_str_eq(r.clauses[0].field, "state.phase");
    ck_assert_str_eq(r.clauses[0].value, "done");
    ck_assert_int_eq(r.clauses[0].negate, 0);
    ck_assert_str_eq(r.clauses[1].field, "code");
    ck_assert_str_eq(r.clauses[1].value, "0");
    ck_assert_int_eq(r.clauses[1].negate, 1);
    ck_assert_int_eq(r.match_level, 1);
    ck_assert_str_eq(r.name_field, "meta.id");
    ck_assert_str_eq(r.message, "Phase done! '{name}' is {matched}");
}
END_TEST

START_TEST(test_shipped_rules)
{
    char file[512], text[65536];
    struct am_rule r;
    FILE *f;
    size_t n;

    snprintf(file, sizeof file, "%s/etc/katomon.conf",
             getenv("top_srcdir") ? getenv("top_srcdir") : "..");
    ck_assert_ptr_nonnull(f = fopen(file, "r"));
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    ck_assert_int_eq(run(text), 0);
    ck_assert_int_eq(am_rule_parse(alert("container_down"), &r, plugin_report, NULL), 0);
    ck_assert_int_eq(r.n_clauses, 2);
    ck_assert_str_eq(r.clauses[1].field, "health");
    ck_assert_str_eq(r.clauses[1].value, "unhealthy");
    ck_assert_int_eq(r.match_level, 2);
    ck_assert_int_eq(am_rule_parse(alert("high_cpu"), &r, plugin_report, NULL), 0);
    ck_assert_double_eq(r.critical, 90);
    ck_assert_double_eq(r.clear, 80);
}
END_TEST

START_TEST(test_render)
{
    struct am_rule r;
    char out[256];

    ck_assert_int_eq(run("[alert cpu]\ntopic = t\npath = a\nwarning = 0.5\n"
                         "message = {type} {level}: {value} ({value_pct}%) over "
                         "{threshold} {x\n"
                         "[alert down]\ntopic = t\npath = c[*]\nmatch = s != up\n"
                         "message = {name} is {value}/{matched}\n"),
                     0);
    ck_assert_int_eq(am_rule_parse(alert("cpu"), &r, plugin_report, NULL), 0);
    am_render(out, sizeof out, &r, 0.75, 0.5, NULL, NULL, 1);
    ck_assert_str_eq(out, "cpu warning: 0.8 (75.0%) over 0.5 {x");
    am_render(out, 12, &r, 0.75, 0.5, NULL, NULL, 2); /* cut, still terminated */
    ck_assert_str_eq(out, "cpu error: ");
    ck_assert_int_eq(am_rule_parse(alert("down"), &r, plugin_report, NULL), 0);
    am_render(out, sizeof out, &r, 0, 0, "redis", "exited", 2);
    ck_assert_str_eq(out, "redis is exited/exited");
    ck_assert_str_eq(am_level_name(0), "info");
}
END_TEST

/* ---- the fleet kinds: host_down, source_down (issue 15) ----------------------- */

START_TEST(test_fleet_grammar)
{
    /* keys that read a path mean nothing to them: each at its line */
    EXPECT_ONE("[core]\n[alert host_down]\nlevel = warning\npath = hosts[*]\n", 4,
               "`path` means nothing in [alert host_down], a host_down rule",
               "the core's `hosts` topic; remove it");
    EXPECT_ONE("[alert host_down]\ntopic = hosts\n", 2, "`topic` means nothing",
               "a host_down rule");
    EXPECT_ONE("[alert source_down]\nwarning = 3\n", 2,
               "`warning` means nothing in [alert source_down], a source_down rule",
               "\"_source\" of every state topic");
    EXPECT_ONE("[alert gone]\nkind = host_down\nmatch = up == false\n", 3,
               "`match` means nothing in [alert gone], a host_down rule");
    /* a source_down rule may name one topic, a valid one */
    EXPECT_ONE("[alert source_down]\ntopic = Redis!\n", 2,
               "bad value `Redis!` for `topic`");
    EXPECT_ONE(
        "[alert host_down]\nlevel = critical\n", 2,
        "bad value `critical` for `level` in [alert host_down]: expected warning or "
        "error");
    /* kind: a known one, agreeing with `match` */
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nwarning = 1\nkind = hostdown\n", 5,
               "bad value `hostdown` for `kind` in [alert x]: expected threshold, match, "
               "host_down or source_down");
    EXPECT_ONE(
        "[alert x]\nkind = threshold\ntopic = t\npath = a[*]\nmatch = s == up\n", 5,
        "`match` makes [alert x] a match rule, but it says kind = threshold at line 2");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a[*]\nkind = match\n", 4,
               "[alert x] is a match rule (kind = match) without `match`");
    /* placeholders of each kind */
    EXPECT_ONE("[alert host_down]\nmessage = {host} silent since {error}\n", 2,
               "placeholder {error} means nothing in `message` of [alert host_down], a "
               "host_down rule",
               "{value}, {name}, {type}, {level}, {host}, {age}");
    EXPECT_ONE("[alert source_down]\nmessage = {topic} after {age} s\n", 2,
               "placeholder {age} means nothing", "a source_down rule",
               "{value}, {name}, {type}, {level}, {topic}, {error}");
    EXPECT_ONE("[alert x]\ntopic = t\npath = a\nwarning = 1\nmessage = {host} hot\n", 5,
               "placeholder {host} means nothing", "a threshold rule");
    /* every problem of a file at once, at its line */
    ck_assert_int_eq(run("[alert host_down]\n" /* 1 */
                         "path = x\n"          /* 2: path */
                         "for = 0\n"           /* 3: typed key */
                         "[alert source_down]\n"
                         "enabled = false\n"
                         "clear = 3\n"), /* 6: clear */
                     3);
    expect_at(2, "`path` means nothing", NULL);
    expect_at(3, "for `for` in [alert host_down]", NULL);
    expect_at(6, "`clear` means nothing in [alert source_down]", NULL);
}
END_TEST

START_TEST(test_fleet_ok)
{
    struct am_rule r;

    ck_assert_int_eq(run("[alert host_down]\n"
                         "\n"
                         "[alert source_down]\n"
                         "enabled = false\n"
                         "\n"
                         "[alert bridge_down]\n"
                         "kind = source_down\n"
                         "topic = redis_bridge\n"
                         "level = warning\n"
                         "for = 3\n"
                         "cooldown = 300\n"
                         "type = bridge\n"
                         "message = {name}: {value} ({level})\n"
                         "\n"
                         "[alert silent]\n"
                         "kind = host_down\n"
                         "message = {host} quiet for {age} s\n"),
                     0);
    ck_assert_int_eq(am_rule_kind(alert("host_down")), AM_HOST_DOWN);
    ck_assert_int_eq(am_rule_kind(alert("source_down")), AM_SOURCE_DOWN);
    ck_assert_int_eq(am_rule_kind(alert("bridge_down")), AM_SOURCE_DOWN);
    ck_assert_int_eq(am_rule_enabled(alert("source_down")), 0);
    ck_assert_int_eq(am_rule_parse(alert("host_down"), &r, plugin_report, NULL), 0);
    ck_assert_int_eq(r.kind, AM_HOST_DOWN);
    ck_assert_int_eq(r.is_match, 0);
    ck_assert_str_eq(r.topic, "hosts");
    ck_assert_str_eq(r.type, "host_down");
    ck_assert_str_eq(r.message, "host {host} down: no message for {age} s");
    ck_assert_int_eq(r.match_level, 2);
    ck_assert_int_eq(am_rule_itemized(&r), 1);
    ck_assert_int_eq(am_rule_parse(alert("bridge_down"), &r, plugin_report, NULL), 0);
    ck_assert_int_eq(r.kind, AM_SOURCE_DOWN);
    ck_assert_str_eq(r.topic, "redis_bridge");
    ck_assert_str_eq(r.type, "bridge");
    ck_assert_int_eq(r.match_level, 1);
    ck_assert_uint_eq(r.for_n, 3);
    ck_assert_double_eq(r.cooldown, 300);
    ck_assert_int_eq(am_rule_parse(alert("silent"), &r, plugin_report, NULL), 0);
    ck_assert_str_eq(r.type, "silent");
    ck_assert_str_eq(r.topic, "hosts");
    /* the other kinds keep their defaults: by `match` */
    ck_assert_int_eq(run("[alert a]\ntopic = t\npath = x\nwarning = 1\n"
                         "[alert b]\ntopic = t\npath = x[*]\nmatch = s == up\n"
                         "[alert c]\nkind = match\ntopic = t\npath = x[*]\nmatch = s == "
                         "up\n"),
                     0);
    ck_assert_int_eq(am_rule_kind(alert("a")), AM_THRESHOLD);
    ck_assert_int_eq(am_rule_kind(alert("b")), AM_MATCH);
    ck_assert_int_eq(am_rule_parse(alert("c"), &r, plugin_report, NULL), 0);
    ck_assert_int_eq(r.is_match, 1);
    ck_assert_int_eq(am_rule_itemized(&r), 1);

    /* the built-ins are the empty sections */
    ck_assert_int_eq(am_rule_builtin(AM_SOURCE_DOWN, &r), 0);
    ck_assert_str_eq(r.name, "source_down");
    ck_assert_str_eq(r.topic, "*");
    ck_assert_str_eq(r.message, "{topic}: source down: {error}");
    ck_assert_int_eq(am_rule_builtin(AM_HOST_DOWN, &r), 0);
    ck_assert_str_eq(r.type, "host_down");
    ck_assert_int_eq(am_rule_builtin(AM_THRESHOLD, &r), -1);
}
END_TEST

START_TEST(test_fleet_render)
{
    struct am_rule r;
    char out[256];

    ck_assert_int_eq(am_rule_builtin(AM_HOST_DOWN, &r), 0);
    am_render(out, sizeof out, &r, 31.4, 0, "B", NULL, 2);
    ck_assert_str_eq(out, "host B down: no message for 31 s");
    ck_assert_int_eq(am_rule_builtin(AM_SOURCE_DOWN, &r), 0);
    am_render(out, sizeof out, &r, 4, 0, "redis_bridge", "connection refused", 2);
    ck_assert_str_eq(out, "redis_bridge: source down: connection refused");
    snprintf(r.message, sizeof r.message, "{name}|{value}|{type}|{level}");
    am_render(out, sizeof out, &r, 4, 0, "t", "e", 1);
    ck_assert_str_eq(out, "t|e|source_down|warning");
}
END_TEST

static Suite *rules_suite(void)
{
    Suite *s = suite_create("alert_rules");
    TCase *bad = tcase_create("problems");
    TCase *good = tcase_create("rules");

    tcase_add_checked_fixture(bad, setup, teardown);
    tcase_add_test(bad, test_required);
    tcase_add_test(bad, test_typed_keys);
    tcase_add_test(bad, test_values);
    tcase_add_test(bad, test_paths_and_kinds);
    tcase_add_test(bad, test_match_grammar);
    tcase_add_test(bad, test_thresholds);
    tcase_add_test(bad, test_placeholders);
    tcase_add_test(bad, test_all_at_once);
    tcase_add_test(bad, test_rule_limit);
    tcase_add_test(bad, test_fleet_grammar);
    suite_add_tcase(s, bad);

    tcase_add_checked_fixture(good, setup, teardown);
    tcase_add_test(good, test_variants_ok);
    tcase_add_test(good, test_shipped_rules);
    tcase_add_test(good, test_render);
    tcase_add_test(good, test_fleet_ok);
    tcase_add_test(good, test_fleet_render);
    suite_add_tcase(s, good);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(rules_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
