/*
 * http_list.h - comma-separated HTTP header lists ("Connection: keep-alive,
 * Upgrade", [http] allowed_origins): one tokenizer for the server, its
 * access rules and the outbound WebSocket client. Header-only; no state.
 */
#ifndef KM_HTTP_LIST_H
#define KM_HTTP_LIST_H

#include <stddef.h>
#include <strings.h>

/*
 * The next item of the list [p, end): skips blanks and commas, then sets
 * *item and *len to the item with its trailing blanks (and, when
 * trim_slash, trailing '/') removed. Returns where the search goes on, or
 * NULL when no item is left. Borrowed pointers into the list.
 */
static inline const char *km_list_next(const char *p, const char *end, int trim_slash,
                                       const char **item, size_t *len)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
        p++;
    if (p >= end)
        return NULL;
    const char *e = p;
    while (e < end && *e != ',')
        e++;
    const char *te = e;
    while (te > p && (te[-1] == ' ' || te[-1] == '\t' || (trim_slash && te[-1] == '/')))
        te--;
    *item = p;
    *len = (size_t)(te - p);
    return e;
}

/* 1 when the list (len bytes; NULL is empty) holds token, case-insensitively. */
static inline int km_list_has(const char *list, size_t len, const char *token)
{
    size_t tl = 0, n;
    const char *item, *p = list, *end = list ? list + len : NULL;

    while (token[tl])
        tl++;
    while (p && (p = km_list_next(p, end, 0, &item, &n)))
        if (n == tl && strncasecmp(item, token, tl) == 0)
            return 1;
    return 0;
}

#endif /* KM_HTTP_LIST_H */
