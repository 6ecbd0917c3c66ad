/*
 * fuzz_config.c - katomon.conf as the core reads it (core/confread.c over
 * libinih, the core's key tables of core/config.c), from memory
 * (km_config_read_fp over fmemopen).
 *
 * Properties, for every input:
 *   - reading is deterministic: twice the same problems (level, line, text)
 *     and the same sections and entries (checked when byte 0 % 4 == 0);
 *   - the count returned is the number of errors reported; every problem
 *     names the file and a line within the input's line count (0: none),
 *     with a text;
 *   - every section kept and every entry has its line within the input, a
 *     kind, and a key that is a string of the input;
 *   - round trip: a file read without errors, written back by the
 *     harness's printer ([KIND NAME] headers, key = value lines; the core's
 *     own sections are checked into struct km_config and not kept), reads
 *     again without errors to the same sections and entries.
 */
#define _GNU_SOURCE /* memmem, fmemopen */
#include <stdio.h>
#include <string.h>

#include "confint.h"
#include "fuzz.h"
#include "log.h"

#define PATH "fuzz.conf"

/* Reads text[0..len) into *cfg, the problems into *probs; the count returned. */
static int read_conf(const uint8_t *text, size_t len, struct km_config **cfg,
                     struct km_problems *probs)
{
    FILE *fp = fmemopen((void *)text, len, "r");
    FUZZ_CHECK(fp != NULL);
    memset(probs, 0, sizeof *probs);
    int errors = km_config_read_fp(fp, PATH, cfg, km_problems_add, probs);
    fclose(fp);
    FUZZ_CHECK(*cfg != NULL);
    FUZZ_CHECK(!probs->lost);
    return errors;
}

static void same_sections(const struct km_config *a, const struct km_config *b, int lines)
{
    FUZZ_CHECKF(a->n_sections == b->n_sections, "%zu sections, then %zu", a->n_sections,
                b->n_sections);
    for (size_t i = 0; i < a->n_sections; i++) {
        const struct km_conf_section *x = a->sections[i], *y = b->sections[i];
        FUZZ_CHECK(strcmp(x->kind, y->kind) == 0 && strcmp(x->name, y->name) == 0);
        FUZZ_CHECK(!lines || x->line == y->line);
        FUZZ_CHECKF(x->n_entries == y->n_entries, "[%s %s]: %zu entries, then %zu",
                    x->kind, x->name, x->n_entries, y->n_entries);
        for (size_t k = 0; k < x->n_entries; k++) {
            FUZZ_CHECK(strcmp(x->entries[k].key, y->entries[k].key) == 0);
            FUZZ_CHECKF(strcmp(x->entries[k].value, y->entries[k].value) == 0,
                        "[%s %s] %s: \"%s\", then \"%s\"", x->kind, x->name,
                        x->entries[k].key, x->entries[k].value, y->entries[k].value);
            FUZZ_CHECK(!lines || x->entries[k].line == y->entries[k].line);
        }
    }
}

/* The sections kept, as a file (malloc'd text, *len bytes); NULL when a
   value does not fit on one line. */
static char *print_sections(const struct km_config *cfg, size_t *len)
{
    char *buf = NULL;
    size_t cap = 0;
    FILE *out = open_memstream(&buf, &cap);
    FUZZ_CHECK(out != NULL);
    int fits = 1;
    for (size_t i = 0; i < cfg->n_sections; i++) {
        const struct km_conf_section *s = cfg->sections[i];
        fprintf(out, "[%s %s]\n", s->kind, s->name);
        for (size_t k = 0; k < s->n_entries; k++) {
            if (strlen(s->entries[k].key) + strlen(s->entries[k].value) > 150)
                fits = 0;
            /* "=;" keeps a value that starts with ';' (" ;" would start a comment) */
            fprintf(out, "%s =%s%s\n", s->entries[k].key,
                    s->entries[k].value[0] == ';' ? "" : " ", s->entries[k].value);
        }
    }
    fclose(out);
    *len = cap;
    if (!fits) {
        free(buf);
        return NULL;
    }
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct km_config *cfg, *again;
    struct km_problems probs, probs2;
    static int quiet;

    if (!quiet) {
        km_log_set_level(KM_LOG_ERROR);
        quiet = 1;
    }
    if (size == 0)
        return 0; /* fmemopen wants a buffer */
    int lines = 0;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    lines += data[size - 1] != '\n';

    int errors = read_conf(data, size, &cfg, &probs);
    FUZZ_CHECKF(errors >= 0 && (size_t)errors == probs.errors,
                "returned %d, %zu reported", errors, probs.errors);
    for (size_t i = 0; i < probs.n; i++) {
        const struct km_problem *p = &probs.v[i];
        FUZZ_CHECK(p->level == KM_LOG_ERROR || p->level == KM_LOG_WARNING);
        FUZZ_CHECKF(strcmp(p->file, PATH) == 0, "file \"%s\"", p->file);
        FUZZ_CHECKF(p->line >= 0 && p->line <= lines, "line %d of %d: %s", p->line, lines,
                    p->text);
        FUZZ_CHECK(p->text && p->text[0]);
    }
    for (size_t i = 0; i < cfg->n_sections; i++) {
        const struct km_conf_section *s = cfg->sections[i];
        FUZZ_CHECK(s->kind && s->kind[0] && s->name);
        FUZZ_CHECKF(s->line >= 1 && s->line <= lines, "[%s %s] at line %d of %d", s->kind,
                    s->name, s->line, lines);
        for (size_t k = 0; k < s->n_entries; k++) {
            const struct km_conf_entry *e = &s->entries[k];
            FUZZ_CHECK(e->key && e->key[0] && e->value);
            FUZZ_CHECK(memmem(data, size, e->key, strlen(e->key)) != NULL);
            FUZZ_CHECKF(e->line >= s->line && e->line <= lines, "%s at line %d of %d",
                        e->key, e->line, lines);
        }
    }

    /* deterministic (checked on a quarter of the inputs: reading is most of
       the time spent) */
    int errors2 = errors;
    if ((data[0] & 3) == 0)
        errors2 = read_conf(data, size, &again, &probs2);
    else
        goto round_trip;
    FUZZ_CHECK(errors2 == errors && probs2.n == probs.n);
    for (size_t i = 0; i < probs.n; i++) {
        FUZZ_CHECK(probs.v[i].level == probs2.v[i].level);
        FUZZ_CHECK(probs.v[i].line == probs2.v[i].line);
        FUZZ_CHECK(strcmp(probs.v[i].text, probs2.v[i].text) == 0);
    }
    same_sections(cfg, again, 1);
    km_config_free(again);
    km_problems_clear(&probs2);

round_trip:;
    /* round trip */
    size_t plen;
    char *printed = errors == 0 ? print_sections(cfg, &plen) : NULL;
    if (printed && plen > 0) {
        int e = read_conf((const uint8_t *)printed, plen, &again, &probs2);
        FUZZ_CHECKF(e == 0, "the printed file has %d errors, the first: line %d: %s\n%s",
                    e, probs2.n ? probs2.v[0].line : 0, probs2.n ? probs2.v[0].text : "",
                    printed);
        same_sections(cfg, again, 0);
        km_config_free(again);
        km_problems_clear(&probs2);
    }
    free(printed);
    km_config_free(cfg);
    km_problems_clear(&probs);
    return 0;
}
