/*
 * check_man_keys.c - katomon.conf(5) lists exactly the keys of the code.
 *
 * The keys a katomon.conf may hold live in two kinds of table: the core's
 * (core/config.c, km_sect_specs: [core], [http], [websocket], [history] and
 * the core's keys of [plugin NAME]) and each shipped plugin's descriptor
 * (.config for its [plugin NAME] section, .kinds for its [KIND NAME]
 * sections, e.g. alert_manager's [alert NAME]). The man page is written by
 * hand, so this test keeps it honest:
 *
 *   - every (section, key) of those tables must be documented, and
 *   - every key the page documents must exist in those tables;
 *   - a plugin key with a default must show that default in its entry.
 *
 * What counts as documented: in katomon.conf.5, a subsection whose
 * title is a section header (`.Ss "[core]"`, `.Ss "[plugin docker_stats]"`,
 * `.Ss "[alert NAME]"`) and, in it, each `.It Cm KEY` of its outermost
 * list (nested lists, e.g. the values of a key, are not keys).
 *
 * The shipped plugins are those `make install` installs: the Makefile
 * passes $(plugins_LTLIBRARIES) as KM_SHIPPED_PLUGINS, and each X.la is
 * dlopen()ed as PLUGIN_BUILD_DIR/X.so, so a new plugin is checked the day
 * it is added. Usage:
 *
 *   check_man_keys [PAGE]   compare (default PAGE: $top_builddir/man/katomon.conf.5,
 *                           made from man/katomon.conf.5.in by `make`)
 *   check_man_keys --list   print the code's keys, one per line:
 *                           [SECTION] KEY TYPE DEFAULT MIN MAX
 *
 * Exit status (automake): 0 agree, 1 they differ (each difference on
 * stderr), 99 a hard error (a plugin that does not load, no page).
 */
#include "confint.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <katomon/plugin.h>

#ifndef KM_SHIPPED_PLUGINS
#define KM_SHIPPED_PLUGINS ""
#endif

#define KM_MAX_KEYS 512  /* keys of code or page; more is a bug here */
#define KM_LABEL    96   /* "[plugin session_events]" */
#define KM_BODY     4096 /* text of one man page entry, for the default */

/* One (section, key) pair, from the code or from the page. */
struct km_doc_key {
    char section[KM_LABEL]; /* "[core]", "[plugin host_stats]", "[alert NAME]" */
    char key[64];           /* "plugin_dir" */
    const char *type;       /* code: "string", "int", ...; page: NULL */
    const char *def;        /* code: a plugin key's default, or NULL */
    double min, max;        /* code: a plugin key's bounds (both 0: none) */
    char body[KM_BODY];     /* page: the entry's text, for the default */
    int line;               /* page: line of its `.It`; code: 0 */
};

/* A list of keys (fixed size: the tables are small). */
struct km_doc_list {
    struct km_doc_key v[KM_MAX_KEYS]; /* the keys */
    size_t n;                         /* how many */
};

static struct km_doc_list code_keys, page_keys;
static void *handles[64]; /* dlopen()ed plugins, closed at exit */
static size_t n_handles;

static struct km_doc_key *add(struct km_doc_list *l, const char *section, const char *key)
{
    if (l->n == KM_MAX_KEYS) {
        fprintf(stderr, "check_man_keys: more than %d keys; raise KM_MAX_KEYS\n",
                KM_MAX_KEYS);
        exit(99);
    }
    struct km_doc_key *k = &l->v[l->n++];
    memset(k, 0, sizeof *k);
    snprintf(k->section, sizeof k->section, "%s", section);
    snprintf(k->key, sizeof k->key, "%s", key);
    return k;
}

static const struct km_doc_key *find(const struct km_doc_list *l, const char *section,
                                     const char *key)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].section, section) == 0 && strcmp(l->v[i].key, key) == 0)
            return &l->v[i];
    return NULL;
}

static const char *core_type(enum km_vtype t)
{
    static const char *const names[] = {
        [KM_V_STRING] = "string",  [KM_V_OPTSTR] = "string", [KM_V_BOOL] = "bool",
        [KM_V_INT] = "int",        [KM_V_DOUBLE] = "number", [KM_V_SIZE] = "size",
        [KM_V_LOGLEVEL] = "level", [KM_V_TIERS] = "tiers",   [KM_V_DURATION] = "duration",
        [KM_V_HOSTNAME] = "host",  [KM_V_FLEET] = "fleet",
    };
    return (size_t)t < sizeof names / sizeof names[0] && names[t] ? names[t] : "?";
}

static const char *plugin_type(enum km_conf_type t)
{
    switch (t) {
    case KM_CONF_STRING:
        return "string";
    case KM_CONF_INT:
        return "int";
    case KM_CONF_DOUBLE:
        return "number";
    case KM_CONF_BOOL:
        return "bool";
    }
    return "?";
}

/* The core's tables: km_sect_specs, whose hint is the header as written. */
static void collect_core(void)
{
    for (const struct km_sect_spec *s = km_sect_specs; s->kind; s++)
        for (const struct km_key *k = s->keys; k->name; k++) {
            struct km_doc_key *d = add(&code_keys, s->hint, k->name);
            d->type = core_type(k->type);
            d->min = k->min;
            d->max = k->max;
        }
}

static void collect_table(const char *section, const struct km_conf_key *keys)
{
    for (const struct km_conf_key *k = keys; k && k->name; k++) {
        struct km_doc_key *d = add(&code_keys, section, k->name);
        d->type = plugin_type(k->type);
        d->def = k->def;
        d->min = k->min;
        d->max = k->max;
    }
}

/* One plugin's descriptor: [plugin NAME] keys, then each kind's. 0 or -1. */
static int collect_plugin(const char *dir, const char *la)
{
    char path[4096], name[128], section[KM_LABEL];
    size_t n = strlen(la);

    if (n < 4 || strcmp(la + n - 3, ".la") != 0 || n - 3 >= sizeof name) {
        fprintf(stderr, "check_man_keys: '%s' is not a libtool library name\n", la);
        return -1;
    }
    /* a subdirectory in the .la name would be the build dir's, not .libs' */
    const char *base = strrchr(la, '/') ? strrchr(la, '/') + 1 : la;
    snprintf(name, sizeof name, "%.*s", (int)(strlen(base) - 3), base);
    snprintf(path, sizeof path, "%s/%s.so", dir, name);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "check_man_keys: cannot load %s: %s\n", path, dlerror());
        return -1;
    }
    if (n_handles < sizeof handles / sizeof handles[0])
        handles[n_handles++] = h;
    const struct km_plugin *p = dlsym(h, KM_PLUGIN_SYMBOL);
    if (!p || p->abi != KM_PLUGIN_ABI) {
        fprintf(stderr, "check_man_keys: %s: no descriptor of ABI %d\n", path,
                KM_PLUGIN_ABI);
        return -1;
    }
    snprintf(section, sizeof section, "[plugin %s]", p->name);
    collect_table(section, p->config);
    for (const struct km_conf_kind *k = p->kinds; k && k->kind; k++) {
        snprintf(section, sizeof section, "[%s NAME]", k->kind);
        if (!k->keys) {
            /* any key: the page cannot be checked against a table */
            fprintf(stderr,
                    "check_man_keys: %s declares %s without a key table; give it one "
                    "so its keys can be documented and checked\n",
                    p->name, section);
            return -1;
        }
        collect_table(section, k->keys);
    }
    return 0;
}

static int collect_plugins(void)
{
    const char *dir = getenv("PLUGIN_BUILD_DIR") ? getenv("PLUGIN_BUILD_DIR") : ".libs";
    char list[] = KM_SHIPPED_PLUGINS;
    int bad = 0, n = 0;

    for (char *save = NULL, *la = strtok_r(list, " \t", &save); la;
         la = strtok_r(NULL, " \t", &save), n++)
        bad |= collect_plugin(dir, la) < 0;
    if (n == 0) {
        fprintf(stderr, "check_man_keys: built without KM_SHIPPED_PLUGINS\n");
        return -1;
    }
    return bad ? -1 : 0;
}

/* ---- the man page ------------------------------------------------------------ */

/* The first argument of a macro line, without its quotes and without the
   zero-width escapes `\&` that keep mandoc from reading "[" or "]" as a
   delimiter (`.Ss "[core]\&"`). */
static void first_arg(const char *p, char *out, size_t n)
{
    size_t i = 0;
    int quoted;

    p += strspn(p, " \t");
    if ((quoted = *p == '"'))
        p++;
    for (; *p && *p != '\n' && i + 1 < n; p++) {
        if (quoted ? *p == '"' : (*p == ' ' || *p == '\t'))
            break;
        if (p[0] == '\\' && p[1] == '&') {
            p++;
            continue;
        }
        out[i++] = *p;
    }
    out[i] = '\0';
}

static int read_page(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[1024], section[KM_LABEL] = "";
    int lineno = 0, depth = 0;
    struct km_doc_key *cur = NULL; /* entry whose body is being read */

    if (!f) {
        perror(path);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (strncmp(line, ".Sh", 3) == 0 || strncmp(line, ".Ss", 3) == 0) {
            section[0] = '\0';
            if (strncmp(line, ".Ss", 3) == 0) {
                first_arg(line + 3, section, sizeof section);
                if (section[0] != '[')
                    section[0] = '\0';
            }
            depth = 0;
            cur = NULL;
            continue;
        }
        if (!section[0])
            continue;
        if (strncmp(line, ".Bl", 3) == 0) {
            depth++;
        } else if (strncmp(line, ".El", 3) == 0) {
            if (--depth == 0)
                cur = NULL;
        } else if (depth == 1 && strncmp(line, ".It", 3) == 0) {
            char key[64];
            const char *p = line + 3 + strspn(line + 3, " \t");
            cur = NULL;
            if (strncmp(p, "Cm ", 3) != 0)
                continue; /* an entry that is not a key, e.g. a note */
            first_arg(p + 3, key, sizeof key);
            if (find(&page_keys, section, key))
                fprintf(stderr, "%s:%d: %s %s is documented twice\n", path, lineno,
                        section, key);
            cur = add(&page_keys, section, key);
            cur->line = lineno;
        } else if (cur) {
            size_t used = strlen(cur->body);
            snprintf(cur->body + used, sizeof cur->body - used, "%s", line);
        }
    }
    fclose(f);
    return 0;
}

/* ---- compare ------------------------------------------------------------------- */

/* 1 when the entry's text shows def as a word ("Default: 5", "Cm 5"). */
static int shows_default(const char *body, const char *def)
{
    size_t n = strlen(def);
    for (const char *p = strstr(body, def); p; p = strstr(p + 1, def)) {
        int before = p == body || strchr(" \t\n\"", p[-1]);
        int after = !p[n] || strchr(" \t\n\".,;)", p[n]);
        if (before && after)
            return 1;
    }
    return 0;
}

static int compare(const char *page)
{
    int bad = 0;

    for (size_t i = 0; i < code_keys.n; i++) {
        const struct km_doc_key *c = &code_keys.v[i];
        const struct km_doc_key *d = find(&page_keys, c->section, c->key);
        if (!d) {
            fprintf(stderr,
                    "%s: %s %s (%s) is in the code but not documented: add `.It Cm %s` "
                    "under `.Ss \"%s\"`\n",
                    page, c->section, c->key, c->type, c->key, c->section);
            bad = 1;
        } else if (c->def && c->def[0] && !shows_default(d->body, c->def)) {
            fprintf(stderr, "%s:%d: %s %s: its default '%s' is not in its entry\n", page,
                    d->line, c->section, c->key, c->def);
            bad = 1;
        }
    }
    for (size_t i = 0; i < page_keys.n; i++) {
        const struct km_doc_key *d = &page_keys.v[i];
        if (!find(&code_keys, d->section, d->key)) {
            fprintf(stderr,
                    "%s:%d: %s %s is documented but no table of the code has it "
                    "(core/config.c or a plugin's descriptor)\n",
                    page, d->line, d->section, d->key);
            bad = 1;
        }
    }
    if (!bad)
        printf("%s: %zu keys in the code, %zu documented: they agree\n", page,
               code_keys.n, page_keys.n);
    return bad;
}

int main(int argc, char **argv)
{
    char page[4096];
    int rc;

    collect_core();
    if (collect_plugins() < 0)
        return 99;
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < code_keys.n; i++) {
            const struct km_doc_key *c = &code_keys.v[i];
            printf("%s %s %s %s %.15g %.15g\n", c->section, c->key, c->type,
                   c->def ? c->def : "-", c->min, c->max);
        }
        rc = 0;
    } else {
        if (argc > 1)
            snprintf(page, sizeof page, "%s", argv[1]);
        else
            snprintf(page, sizeof page, "%s/man/katomon.conf.5",
                     getenv("top_builddir") ? getenv("top_builddir") : ".");
        rc = read_page(page) < 0 ? 99 : compare(page);
    }
    for (size_t i = 0; i < n_handles; i++)
        dlclose(handles[i]);
    return rc;
}
