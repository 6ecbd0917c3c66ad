/*
 * confread.c - reads katomon.conf with libinih, reporting every problem
 * with its line.
 *
 * inih's handler sees neither line numbers nor section headers, and inih
 * silently splits a line longer than its buffer. So inih reads the file
 * through our own reader (km_read_line): it reads whole lines, counts them,
 * refuses over-long ones, and reads section headers itself, which lets an
 * empty [plugin NAME] section count and a duplicate one be reported with
 * both line numbers. The reader mirrors inih's rules for what a line is
 * (comment, header, key = value, indented continuation), so the handler
 * always knows which line and section it is called for, and a line inih
 * will call a syntax error is reported here, with a better message.
 *
 * While parsing, every section ([core] too) is a list of entries, which is
 * what duplicate keys and continuation lines need; a value of [core],
 * [http] or [websocket] is checked and stored into struct km_config once it
 * is complete (its continuation lines read). Only [plugin NAME] and the
 * plugins' [KIND NAME] sections stay in cfg->sections.
 *
 * A problem does not stop the reading: the line is reported and left out,
 * and the reader goes on, so that one run names every problem. A section
 * whose header was refused is skipped to its end (its lines would only
 * repeat the header's problem). Only an unreadable file, memory running
 * out or KM_MAX_ERRORS errors stop it.
 *
 * Decisions worth knowing:
 *  - An indented line continues the previous key's value (inih's
 *    multi-line values; joined with one space), which is how a value
 *    longer than a line is written. An indented line that looks like
 *    `key = value` or `[section]` is refused instead, since it is almost
 *    always a key that was meant to stand on its own.
 *  - [KIND NAME] of a kind that is not the core's is kept whole for the
 *    plugin that declares KIND; an unnamed [KIND] of such a kind is an
 *    error (plugins' sections are always named).
 */
#include "confint.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <ini.h>

#define KM_MAX_ERRORS 100 /* past this, the file is hardly katomon.conf */

/* State of one km_config_read. */
struct km_parse {
    struct km_config *cfg;      /* being filled; owns the sections */
    FILE *fp;                   /* the file */
    char *buf;                  /* getline() buffer */
    size_t bufcap;              /* its size */
    int line;                   /* number of the line last read */
    int prev_key;               /* mirrors inih: an indented line continues a key */
    int cont;                   /* the current line is such a continuation */
    struct km_sect *cur;        /* section being read; NULL before any header */
    int skip;                   /* cur's header was refused: ignore its lines */
    struct km_conf_entry *last; /* entry of the last key line (continuations
                                   go there); NULL when that line was refused */
    int last_end;               /* line where `last`'s value ends so far */
    int syntax_reported;        /* a line inih will refuse was reported */
    km_config_report_fn report; /* where problems go */
    void *report_arg;           /* its argument */
    int errors;                 /* problems reported */
    int stop;                   /* stop reading (I/O, memory, too many errors) */
};

/* ---- small helpers ----------------------------------------------------- */

static char *km_lskip(char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    return s;
}

static char *km_rstrip(char *s)
{
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* As inih's ini_find_chars_or_comment: the first of `chars`, or an inline
   ';' comment (one that follows whitespace), or the end. Must match inih,
   or the reader and inih would disagree about a line. */
static char *km_find_chars_or_comment(char *s, const char *chars)
{
    int was_space = 0;
    while (*s && (!chars || !strchr(chars, *s)) && !(was_space && *s == ';')) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

/* Reports one problem at line (0: the file as a whole). */
__attribute__((format(printf, 3, 4))) static void km_fail(struct km_parse *p, int line,
                                                          const char *fmt, ...)
{
    char text[1024];
    va_list ap;

    if (p->stop)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    p->report(p->report_arg, KM_LOG_ERROR, p->cfg->path, line, text);
    if (++p->errors == KM_MAX_ERRORS) {
        p->report(p->report_arg, KM_LOG_ERROR, p->cfg->path, line,
                  "too many errors; stopping here (is this katomon.conf?)");
        p->errors++;
        p->stop = 1;
    }
}

static void km_oom(struct km_parse *p)
{
    km_fail(p, 0, "out of memory");
    p->stop = 1;
}

/* Plugin and section names end up in file names, topic keys and JSON. */
static int km_name_ok(const char *s)
{
    size_t n = strspn(s, KM_IDENT);
    return n > 0 && n <= KM_NAME_MAX && s[n] == '\0';
}

/* ---- sections and entries ---------------------------------------------- */

static struct km_sect *km_sect_find(const struct km_config *cfg, const char *kind,
                                    const char *name)
{
    for (size_t i = 0; i < cfg->n_sections; i++) {
        struct km_conf_section *sec = cfg->sections[i];
        if (strcmp(sec->kind, kind) == 0 && strcmp(sec->name, name) == 0)
            return (struct km_sect *)sec;
    }
    return NULL;
}

/* Appends a new, empty section to cfg->sections. */
static struct km_sect *km_sect_new(struct km_parse *p, const struct km_sect_spec *spec,
                                   const char *kind, const char *name)
{
    struct km_config *cfg = p->cfg;
    struct km_conf_section **grown =
        realloc(cfg->sections, (cfg->n_sections + 1) * sizeof *grown);
    struct km_sect *s = calloc(1, sizeof *s);
    if (grown)
        cfg->sections = grown;
    if (!grown || !s || !(s->pub.name = strdup(name)) ||
        (spec == &km_plugin_kind_spec && !(s->kind = strdup(kind)))) {
        km_sect_free(s);
        return NULL;
    }
    s->spec = spec;
    s->pub.kind = s->kind ? s->kind : spec->kind;
    s->pub.file = cfg->path;
    s->pub.line = p->line;
    cfg->sections[cfg->n_sections++] = &s->pub;
    return s;
}

static int km_sect_add(struct km_sect *s, const char *key, const char *value, int line)
{
    if (s->pub.n_entries == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        struct km_conf_entry *grown = realloc(s->ents, cap * sizeof *grown);
        if (!grown)
            return -1;
        s->ents = grown;
        s->cap = cap;
        s->pub.entries = grown;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    s->ents[s->pub.n_entries++] = (struct km_conf_entry){k, v, line};
    return 0;
}

/* Continuation lines are joined to the value with one space (none after an
   empty value: values are trimmed). */
static int km_entry_append(struct km_conf_entry *e, const char *text)
{
    size_t a = strlen(e->value), b = strlen(text);
    char *v = realloc((char *)e->value, a + b + 2);
    if (!v)
        return -1;
    if (a)
        v[a++] = ' ';
    memcpy(v + a, text, b + 1);
    e->value = v;
    return 0;
}

/* The value of the last key line is complete (the next line is not one of
   its continuations): check it and, for the core's keys, store it. Errors
   name the line the value ends on. */
static void km_value_done(struct km_parse *p)
{
    struct km_conf_entry *e = p->last;
    const struct km_key *k = e && p->cur ? km_key_find(p->cur->spec->keys, e->key) : NULL;
    char label[96], what[256], cont[48] = "";

    p->last = NULL;
    if (!k)
        return; /* not the core's: the plugin's keys are checked by the loader */
    int rc = km_key_apply(k, e->value, p->cfg);
    if (rc == -2)
        km_oom(p);
    if (rc != -1)
        return;
    if (e->line != p->last_end)
        snprintf(cont, sizeof cont, " (continued from line %d)", e->line);
    km_label(&p->cur->pub, label, sizeof label);
    if (!*e->value)
        km_fail(p, p->last_end, "`%s` in %s is empty: expected %s", k->name, label,
                km_key_describe(k, what, sizeof what));
    else
        km_fail(p, p->last_end, "bad value `%.*s%s` for `%s` in %s%s: expected %s",
                km_show_len(e->value), e->value, km_show_more(e->value), k->name, label,
                cont, km_key_describe(k, what, sizeof what));
}

/* ---- headers -------------------------------------------------------------- */

static void km_unknown_section(struct km_parse *p, const char *kind)
{
    const char *near = km_suggest(kind, km_sect_specs, sizeof km_sect_specs[0]);
    if (near)
        km_fail(p, p->line,
                "unknown section [%s]; did you mean [%s]? the core's sections are %s; "
                "a plugin's own sections are named, e.g. [alert high_cpu]",
                kind, near, km_config_core_kinds());
    else
        km_fail(p, p->line,
                "unknown section [%s]: the core's sections are %s, and a plugin's own "
                "sections take a name: [%s NAME]",
                kind, km_config_core_kinds(), kind);
}

/* Checks KIND and NAME of a header; NULL when refused (and reported). */
static const struct km_sect_spec *km_header_spec(struct km_parse *p, const char *kind,
                                                 const char *name)
{
    const struct km_sect_spec *spec = km_spec_find(kind);
    const char *what = spec ? spec->kind : kind;

    if (!spec && (!*name || !km_name_ok(kind))) {
        km_unknown_section(p, kind);
        return NULL;
    }
    if (!spec)
        spec = &km_plugin_kind_spec;
    if (spec->named && !*name)
        km_fail(p, p->line, "[%s] needs a name: write [%s NAME], e.g. [%s %s]", what,
                what, what, *what == 'p' ? "host_stats" : "high_cpu");
    else if (!spec->named && *name)
        km_fail(p, p->line, "[%s] takes no name (found `%s`); write just [%s]", what,
                name, what);
    else if (spec->named && !km_name_ok(name))
        km_fail(
            p, p->line,
            "bad name `%s` in [%s %s]: use letters, digits, '_' and '-' only, at most "
            "%d characters",
            name, what, name, KM_NAME_MAX);
    else
        return spec;
    return NULL;
}

static void km_section_begin(struct km_parse *p, const char *kind, const char *name)
{
    const struct km_sect_spec *spec;
    struct km_sect *dup;
    char label[96];

    km_value_done(p);
    p->cur = NULL;
    p->skip = 1;
    if (!(spec = km_header_spec(p, kind, name)))
        return;
    if ((dup = km_sect_find(p->cfg, kind, name))) {
        km_fail(p, p->line, "%s already defined at line %d; remove one",
                km_label(&dup->pub, label, sizeof label), dup->pub.line);
        return;
    }
    if (!(p->cur = km_sect_new(p, spec, kind, name))) {
        km_oom(p);
        return;
    }
    p->skip = 0;
}

/* A line inih will refuse: report it, with what is wrong. */
static void km_syntax(struct km_parse *p, const char *what, const char *text)
{
    km_fail(p, p->line, "syntax error: %s`%.*s%s`", what, km_show_len(text), text,
            km_show_more(text));
    p->syntax_reported = 1;
}

/* A "[...]" line; t points at the '['. */
static void km_header(struct km_parse *p, char *t)
{
    char *end = km_find_chars_or_comment(t + 1, "]");
    if (*end != ']') {
        km_rstrip(t);
        km_syntax(p, "a section header needs a closing ']', as in [core]: ", t);
        /* inih keeps the previous section; its keys would land there */
        km_value_done(p);
        p->cur = NULL;
        p->skip = 1;
        return;
    }
    p->prev_key = 0; /* inih forgets the previous key at a header */
    char *rest = km_lskip(end + 1);
    *end = '\0';
    char *kind = km_rstrip(km_lskip(t + 1)), *name = kind;
    while (*name && !isspace((unsigned char)*name))
        name++;
    if (*name)
        *name++ = '\0';
    if (*rest && *rest != ';' && *rest != '#') {
        km_value_done(p);
        km_fail(p, p->line,
                "unexpected text `%.*s%s` after ']'; put a comment after ' ;' or on a "
                "line of its own",
                km_show_len(rest), rest, km_show_more(rest));
        p->cur = NULL;
        p->skip = 1;
        return;
    }
    km_section_begin(p, kind, km_lskip(name));
}

/* Decides, as inih will, what line `raw` is, and acts on headers. */
static void km_classify(struct km_parse *p, char *raw)
{
    char *s = raw;
    if (p->line == 1 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3; /* UTF-8 byte order mark; inih skips it too */
    char *t = km_rstrip(km_lskip(s));

    p->cont = 0;
    if (*t == '\0' || *t == ';' || *t == '#')
        return; /* blank or comment */
    if (t > s && p->prev_key) {
        p->cont = 1; /* indented: inih hands it over as more of the last value */
        return;
    }
    if (*t == '[') {
        km_header(p, t);
        return;
    }
    char *end = km_find_chars_or_comment(t, "=:");
    int sep = *end == '=' || *end == ':';
    *end = '\0';
    km_rstrip(t);
    if (!sep)
        km_syntax(p, "expected `key = value`, a [section] or a ; comment, got ", t);
    else
        p->prev_key = *t != '\0';
}

/* ---- what inih calls ------------------------------------------------------ */

/* inih's reader: one whole line per call, or NULL to stop. A line that
   cannot be read as a line (too long, a NUL byte) is reported and handed
   to inih as a blank one. */
static char *km_read_line(char *str, int num, void *stream)
{
    struct km_parse *p = stream;
    if (p->stop)
        return NULL;
    errno = 0;
    ssize_t n = getline(&p->buf, &p->bufcap, p->fp);
    if (n < 0) {
        /* getline's ENOMEM sets neither flag: only feof() means the end */
        if (ferror(p->fp) || !feof(p->fp)) {
            km_fail(p, 0, "cannot read: %s; pass the right path with -c FILE",
                    strerror(errno ? errno : EIO));
            p->stop = 1;
        }
        return NULL;
    }
    p->line++;
    size_t len = (size_t)n;
    if (len && p->buf[len - 1] == '\n')
        len--;
    if (len && p->buf[len - 1] == '\r')
        len--;
    str[0] = '\0';
    if (strlen(p->buf) != (size_t)n) {
        km_fail(p, p->line, "line contains a NUL byte; katomon.conf must be plain text");
    } else if (num < 4 || len > (size_t)num - 3) {
        /* fgets-style: num includes the '\n' and the '\0' (and a '\r' at most) */
        km_fail(p, p->line,
                "line is %zu characters long; at most %d fit: shorten it, or continue a "
                "long value on the next line, indented",
                len, num - 3);
    } else {
        memcpy(str, p->buf, (size_t)n + 1);
        km_classify(p, p->buf); /* may modify buf; inih has its own copy */
    }
    return p->stop ? NULL : str;
}

/* The section a key outside any section probably belongs to. */
static const char *km_home_of(const char *key)
{
    for (const struct km_sect_spec *s = km_sect_specs; s->kind; s++)
        if (!s->named && km_key_find(s->keys, key))
            return s->hint;
    return NULL;
}

static void km_unknown_key(struct km_parse *p, const char *key)
{
    char label[96], hint[64], all[256];
    const struct km_key *keys = p->cur->spec->keys;
    km_fail(p, p->line, "unknown key `%s` in %s;%s valid keys are: %s", key,
            km_label(&p->cur->pub, label, sizeof label),
            km_hint(key, keys, sizeof keys[0], hint, sizeof hint),
            km_list(keys, sizeof keys[0], all, sizeof all));
}

/* A `key = value` line. */
static void km_pair(struct km_parse *p, const char *key, const char *value)
{
    struct km_sect *s = p->cur;
    const struct km_conf_entry *dup;
    char label[96];

    km_value_done(p);
    if (p->skip)
        return;
    if (!s) {
        const char *home = km_home_of(key);
        km_fail(p, p->line, "`%s` is outside any section; put it under %s", key,
                home ? home : "the [section] header it belongs to, e.g. [core]");
    } else if (!*key) {
        km_fail(p, p->line, "a value without a key; write key = value");
    } else if (!km_key_find(s->spec->keys, key) && !s->spec->open) {
        km_unknown_key(p, key);
    } else if ((dup = km_conf_entry(&s->pub, key))) {
        km_fail(p, p->line, "`%s` already set at line %d in %s; remove one", key,
                dup->line, km_label(&s->pub, label, sizeof label));
    } else if (km_sect_add(s, key, value, p->line) < 0) {
        km_oom(p);
    } else {
        p->last = &s->ents[s->pub.n_entries - 1];
        p->last_end = p->line;
    }
}

/* An indented line that reads like a key or a header was meant as one. */
static int km_looks_like_key(const char *text)
{
    size_t n = strspn(text, KM_IDENT);
    while (n && isspace((unsigned char)text[n]))
        n++;
    return *text == '[' || (n && (text[n] == '=' || text[n] == ':'));
}

/* An indented line: more of the previous key's value. */
static void km_continue(struct km_parse *p, const char *value)
{
    struct km_conf_entry *e = p->last;
    if (!e)
        return; /* its key line was refused and reported; so is its value */
    /* " ;" starts a comment on a continuation line too (katomon.conf(5)),
       which Debian's inih (r55) leaves in the value */
    char *text = strdup(value);
    if (!text) {
        km_oom(p);
        return;
    }
    *km_find_chars_or_comment(text, NULL) = '\0';
    km_rstrip(text);
    if (km_looks_like_key(text)) {
        km_fail(p, p->line,
                "this indented line would continue the value of `%s` (line %d); "
                "remove the indentation if it starts a key or section of its own",
                e->key, e->line);
    } else if (km_entry_append(e, text) < 0) {
        km_oom(p);
    } else {
        p->last_end = p->line;
    }
    free(text);
}

/* inih's handler. The section name it passes is unused: we track sections
   ourselves (inih truncates long names and never reports empty ones). */
static int km_on_pair(void *user, const char *section, const char *key, const char *value)
{
    struct km_parse *p = user;
    (void)section;
    if (p->stop)
        return 0;
    if (p->cont)
        km_continue(p, value);
    else
        km_pair(p, key, value);
    return 1; /* problems are reported here, not through inih */
}

/* ---- reading ---------------------------------------------------------------- */

/* [core], [http] and [websocket] are in struct km_config itself; drop their
   entry lists so cfg->sections holds [plugin] and plugins' sections only. */
static void km_drop_builtin(struct km_config *cfg)
{
    size_t kept = 0;
    for (size_t i = 0; i < cfg->n_sections; i++) {
        struct km_sect *s = (struct km_sect *)cfg->sections[i];
        if (s->spec->named)
            cfg->sections[kept++] = &s->pub;
        else
            km_sect_free(s);
    }
    cfg->n_sections = kept;
}

static void km_parse_file(struct km_parse *p)
{
    int rv = ini_parse_stream(km_read_line, p, km_on_pair, p);
    km_value_done(p);
    if (rv == -2)
        km_oom(p);
    else if (rv > 0 && !p->syntax_reported) /* a rule of inih's we do not mirror */
        km_fail(p, rv,
                "syntax error: expected `key = value`, a [section] or a ; comment");
}

/* km_config_read of the open stream fp (borrowed; NULL: open path). */
int km_config_read_fp(FILE *fp, const char *path, struct km_config **out,
                      km_config_report_fn report, void *arg)
{
    struct km_parse p = {.report = report, .report_arg = arg};

    *out = NULL;
    p.cfg = km_config_defaults();
    if (!p.cfg || !(p.cfg->path = strdup(path ? path : ""))) {
        report(arg, KM_LOG_ERROR, path ? path : "", 0, "out of memory");
        km_config_free(p.cfg);
        return 1;
    }
    if (!(p.fp = fp ? fp : fopen(p.cfg->path, "r")))
        km_fail(&p, 0, "cannot open: %s; pass the right path with -c FILE",
                strerror(errno));
    else
        km_parse_file(&p);
    free(p.buf);
    if (p.fp && !fp)
        fclose(p.fp);
    km_drop_builtin(p.cfg);
    *out = p.cfg;
    return p.errors;
}

int km_config_read(const char *path, struct km_config **out, km_config_report_fn report,
                   void *arg)
{
    return km_config_read_fp(NULL, path, out, report, arg);
}

/* km_config_load's report: keeps the first problem as "FILE:LINE: ...". */
struct km_first {
    char *err;     /* caller's buffer; may be NULL */
    size_t errlen; /* its size */
    int seen;      /* the first problem is in err */
};

static void km_keep_first(void *arg, enum km_log_level level, const char *file, int line,
                          const char *text)
{
    struct km_first *f = arg;
    struct km_problem pr = {level, (char *)file, line, (char *)text};
    if (f->seen++ || !f->err || !f->errlen)
        return;
    km_problem_format(&pr, 0, f->err, f->errlen);
}

int km_config_load(const char *path, struct km_config **out, char *err, size_t errlen)
{
    struct km_first first = {err, errlen, 0};
    if (km_config_read(path, out, km_keep_first, &first) == 0)
        return 0;
    km_config_free(*out);
    *out = NULL;
    return -1;
}
