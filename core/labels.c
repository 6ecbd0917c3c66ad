/*
 * labels.c - label text: a series' labels as the exposition format writes
 * them, sorted by name (see series.h, "Label text").
 *
 * Pure string work, no allocation: buffers are the caller's.
 */
#include <stdio.h>
#include <string.h>

#include "series.h"

/* 1 when key is a label name: [a-zA-Z_][a-zA-Z0-9_]*, at most 64 bytes. */
int km_label_name_valid(const char *key)
{
    if (!*key || strlen(key) > 64)
        return 0;
    for (const char *p = key; *p; p++) {
        unsigned char c = (unsigned char)*p;
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(p > key && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

/* ---- label text ---- */

/* Appends `key="value"` with value escaped to out (at most n bytes incl.
   NUL); returns the length written or -1 when it does not fit. */
static long km_label_format(char *out, size_t n, const char *key, const char *value)
{
    size_t k = strlen(key);
    if (k + 2 >= n)
        return -1;
    memcpy(out, key, k);
    out[k++] = '=';
    out[k++] = '"';
    for (const char *v = value; *v; v++) {
        const char *esc = *v == '\\'   ? "\\\\"
                          : *v == '"'  ? "\\\""
                          : *v == '\n' ? "\\n"
                                       : NULL;
        size_t add = esc ? 2 : 1;
        if (k + add + 2 > n)
            return -1;
        if (esc)
            memcpy(out + k, esc, 2);
        else
            out[k] = *v;
        k += add;
    }
    if (k + 2 > n)
        return -1;
    out[k++] = '"';
    out[k] = '\0';
    return (long)k;
}

int km_labels_next(const char **p, char *key, size_t keylen, char *value, size_t valuelen)
{
    const char *s = *p;
    size_t k = 0;

    if (!*s)
        return 0;
    while (*s && *s != '=') {
        if (k + 1 >= keylen)
            return -1;
        key[k++] = *s++;
    }
    key[k] = '\0';
    if (*s++ != '=' || *s++ != '"' || !k)
        return -1;
    k = 0;
    while (*s && *s != '"') {
        char c = *s++;
        if (c == '\\') {
            c = *s == 'n' ? '\n' : *s;
            if (!*s++)
                return -1;
        }
        if (k + 1 >= valuelen)
            return -1;
        value[k++] = c;
    }
    value[k] = '\0';
    if (*s++ != '"')
        return -1;
    if (*s == ',')
        s++;
    else if (*s)
        return -1;
    *p = s;
    return 1;
}

int km_labels_add(char *buf, size_t len, const char *key, const char *value)
{
    char out[KM_SERIES_LABELS_MAX + 1];
    char k[72], v[KM_SERIES_LABELS_MAX + 1];
    const char *p = buf;
    size_t o = 0;
    int placed = 0, r;

    if (!km_label_name_valid(key))
        return -1;
    out[0] = '\0';
    while ((r = km_labels_next(&p, k, sizeof k, v, sizeof v)) == 1) {
        int cmp = strcmp(key, k);
        if (cmp == 0)
            return -1;
        for (int pass = 0; pass < 2; pass++) {
            int mine = pass == 0;
            if (mine && (placed || cmp > 0))
                continue;
            long w = km_label_format(out + o + (o ? 1 : 0), sizeof out - o - (o ? 1 : 0),
                                     mine ? key : k, mine ? value : v);
            if (w < 0)
                return -1;
            if (o)
                out[o++] = ',';
            o += (size_t)w;
            placed |= mine;
        }
    }
    if (r < 0)
        return -1;
    if (!placed) {
        long w = km_label_format(out + o + (o ? 1 : 0), sizeof out - o - (o ? 1 : 0), key,
                                 value);
        if (w < 0)
            return -1;
        if (o)
            out[o++] = ',';
        o += (size_t)w;
    }
    if (o + 1 > len)
        return -1;
    memcpy(buf, out, o + 1);
    return 0;
}

int km_labels_has(const char *labels, const char *key, const char *value)
{
    char k[72], v[KM_SERIES_LABELS_MAX + 1];
    const char *p = labels;

    while (km_labels_next(&p, k, sizeof k, v, sizeof v) == 1)
        if (strcmp(k, key) == 0)
            return strcmp(v, value) == 0;
    return 0;
}
