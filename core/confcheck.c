/*
 * confcheck.c - the typed keys of plugins' sections (struct km_conf_key),
 * the did-you-mean hints every config message uses, and lists of problems.
 *
 * The loader calls km_config_check_keys for a plugin's [plugin NAME]
 * section and for each section of a kind the plugin declares; start-up,
 * SIGHUP and --check-config all come through here, so they agree.
 */
#include "confint.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <katomon/conf.h>

/* ---- hints ---------------------------------------------------------------- */

const char *km_label(const struct km_conf_section *sec, char *buf, size_t n)
{
    if (sec->name && *sec->name)
        snprintf(buf, n, "[%s %s]", sec->kind, sec->name);
    else
        snprintf(buf, n, "[%s]", sec->kind);
    return buf;
}

int km_show_len(const char *v)
{
    return strlen(v) > KM_SHOW ? KM_SHOW : (int)strlen(v);
}

const char *km_show_more(const char *v)
{
    return strlen(v) > KM_SHOW ? "..." : "";
}

/* Tables of keys and section specs all start with their name, so one set
   of helpers (suggest, list) serves them all. */
static const char *km_tab_name(const void *tab, size_t stride, size_t i)
{
    return *(const char *const *)(const void *)((const char *)tab + i * stride);
}

/* Edit distance with transpositions ("prot" -> "port" is 1), ignoring case. */
static size_t km_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d[32][32];
    if (la >= 32 || lb >= 32)
        return SIZE_MAX;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (unsigned char)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (unsigned char)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]),
                cb = tolower((unsigned char)b[j - 1]);
            unsigned v = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1u < v)
                v = d[i - 1][j] + 1u;
            if (d[i][j - 1] + 1u < v)
                v = d[i][j - 1] + 1u;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1u < v)
                v = d[i - 2][j - 2] + 1u;
            d[i][j] = (unsigned char)v;
        }
    }
    return d[la][lb];
}

const char *km_suggest(const char *word, const void *tab, size_t stride)
{
    size_t best = strlen(word) < 4 ? 1 : 2;
    const char *found = NULL;
    for (size_t i = 0; km_tab_name(tab, stride, i); i++) {
        size_t d = km_distance(word, km_tab_name(tab, stride, i));
        if (d <= best) {
            best = d;
            found = km_tab_name(tab, stride, i);
        }
    }
    return found;
}

const char *km_list(const void *tab, size_t stride, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; km_tab_name(tab, stride, i) && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "",
                         km_tab_name(tab, stride, i));
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return buf;
}

const char *km_hint(const char *word, const void *tab, size_t stride, char *buf, size_t n)
{
    const char *s = km_suggest(word, tab, stride);
    if (s)
        snprintf(buf, n, " did you mean `%s`?", s);
    else
        buf[0] = '\0';
    return buf;
}

const char *km_config_suggest(const char *word, const char *const *names)
{
    return km_suggest(word, names, sizeof names[0]);
}

/* ---- a plugin's typed keys -------------------------------------------------- */

static const struct km_conf_key *km_conf_key_find(const struct km_conf_key *keys,
                                                  const char *name)
{
    for (; keys && keys->name; keys++)
        if (strcmp(keys->name, name) == 0)
            return keys;
    return NULL;
}

/* Whether value is of k's type and within its bounds (both 0: none). */
static int km_conf_value_ok(const struct km_conf_key *k, const char *value)
{
    long long i;
    double d;
    int b;
    switch (k->type) {
    case KM_CONF_INT:
        if (km_conf_parse_int(value, &i) < 0)
            return 0;
        d = (double)i;
        break;
    case KM_CONF_DOUBLE:
        if (km_conf_parse_double(value, &d) < 0)
            return 0;
        break;
    case KM_CONF_BOOL:
        return km_conf_parse_bool(value, &b) == 0;
    default:
        return 1;
    }
    return (k->min == 0 && k->max == 0) || (d >= k->min && d <= k->max);
}

static const char *km_conf_describe(const struct km_conf_key *k, char *buf, size_t n)
{
    const char *what = k->type == KM_CONF_INT ? "an integer" : "a number";
    if (k->type == KM_CONF_BOOL)
        return "true or false (also yes/no, on/off, 1/0)";
    if (k->min == 0 && k->max == 0)
        snprintf(buf, n, "%s", what);
    else
        snprintf(buf, n, "%s from %.15g to %.15g", what, k->min, k->max);
    return buf;
}

/* The core's own keys of [plugin NAME], which the plugin's table lacks. */
static int km_core_plugin_key(const struct km_conf_section *sec, const char *key)
{
    return strcmp(sec->kind, "plugin") == 0 &&
           (strcmp(key, "file") == 0 || strcmp(key, "enabled") == 0 ||
            strcmp(key, "collect") == 0);
}

static void km_check_unknown(const struct km_conf_section *sec,
                             const struct km_conf_key *keys,
                             const struct km_conf_entry *e, km_config_report_fn report,
                             void *arg)
{
    char label[96], hint[64] = "", all[256] = "", text[640];
    int plugin = strcmp(sec->kind, "plugin") == 0;

    km_label(sec, label, sizeof label);
    if (keys && keys->name) {
        km_hint(e->key, keys, sizeof keys[0], hint, sizeof hint);
        km_list(keys, sizeof keys[0], all, sizeof all);
        if (plugin)
            snprintf(
                text, sizeof text,
                "unknown key `%s` in %s;%s %s takes: %s (and file, enabled, collect)",
                e->key, label, hint, sec->name, all);
        else
            snprintf(text, sizeof text, "unknown key `%s` in %s;%s [%s NAME] takes: %s",
                     e->key, label, hint, sec->kind, all);
    } else {
        snprintf(text, sizeof text,
                 "unknown key `%s` in %s; %s takes no keys%s: remove it", e->key, label,
                 plugin ? sec->name : label,
                 plugin ? " besides file, enabled and collect" : "");
    }
    report(arg, KM_LOG_ERROR, sec->file, e->line, text);
}

static void km_check_bad(const struct km_conf_section *sec, const struct km_conf_key *k,
                         const struct km_conf_entry *e, km_config_report_fn report,
                         void *arg)
{
    char label[96], type[96], text[640];
    snprintf(text, sizeof text, "bad value `%.*s%s` for `%s` in %s: expected %s%s%s%s",
             km_show_len(e->value), e->value, km_show_more(e->value), k->name,
             km_label(sec, label, sizeof label), km_conf_describe(k, type, sizeof type),
             k->help ? " (" : "", k->help ? k->help : "", k->help ? ")" : "");
    report(arg, KM_LOG_ERROR, sec->file, e->line, text);
}

size_t km_config_check_keys(const struct km_conf_section *sec,
                            const struct km_conf_key *keys, km_config_report_fn report,
                            void *arg)
{
    size_t problems = 0;
    for (size_t i = 0; sec && i < sec->n_entries; i++) {
        const struct km_conf_entry *e = &sec->entries[i];
        const struct km_conf_key *k;
        if (km_core_plugin_key(sec, e->key))
            continue; /* the core's own, checked when the file was read */
        if (!(k = km_conf_key_find(keys, e->key))) {
            km_check_unknown(sec, keys, e, report, arg);
            problems++;
        } else if (!km_conf_value_ok(k, e->value)) {
            km_check_bad(sec, k, e, report, arg);
            problems++;
        }
    }
    return problems;
}

/* ---- lists of problems ------------------------------------------------------ */

void km_problems_add(void *list, enum km_log_level level, const char *file, int line,
                     const char *text)
{
    struct km_problems *l = list;
    if (level <= KM_LOG_ERROR)
        l->errors++; /* counted even when it cannot be stored */
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        struct km_problem *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->lost = 1;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    struct km_problem *p = &l->v[l->n];
    p->level = level;
    p->line = line;
    p->file = strdup(file ? file : "");
    p->text = strdup(text ? text : "");
    if (!p->file || !p->text) {
        free(p->file);
        free(p->text);
        l->lost = 1;
        return;
    }
    l->n++;
}

static int km_problem_cmp(const void *a, const void *b)
{
    const struct km_problem *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    if (c)
        return c;
    return (x->line > y->line) - (x->line < y->line);
}

void km_problems_sort(struct km_problems *list)
{
    /* insertion sort: stable, and lists are short */
    for (size_t i = 1; i < list->n; i++) {
        struct km_problem p = list->v[i];
        size_t j = i;
        for (; j > 0 && km_problem_cmp(&list->v[j - 1], &p) > 0; j--)
            list->v[j] = list->v[j - 1];
        list->v[j] = p;
    }
}

const char *km_problem_format(const struct km_problem *p, int tag, char *buf, size_t n)
{
    const char *what = tag && p->level > KM_LOG_ERROR ? "warning: " : "";
    const char *file = p->file && *p->file ? p->file : "katomon.conf";
    if (p->line > 0)
        snprintf(buf, n, "%s:%d: %s%s", file, p->line, what, p->text);
    else
        snprintf(buf, n, "%s: %s%s", file, what, p->text);
    return buf;
}

void km_problems_clear(struct km_problems *list)
{
    for (size_t i = 0; i < list->n; i++) {
        free(list->v[i].file);
        free(list->v[i].text);
    }
    free(list->v);
    memset(list, 0, sizeof *list);
}
