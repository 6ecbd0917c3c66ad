/*
 * series.c - the series registry: every number of every state topic, by
 * name and labels (see series.h).
 *
 * Families and series live in two chained hash tables (FNV-1a, grown at a
 * load factor of 1) and in creation-ordered lists, which is the order
 * GET /metrics writes them in. Each state topic that has fed series has a
 * struct km_tseries listing them, one per host (issue 15: a remote host's
 * value of a topic feeds its own series, labelled host="B"), so a walk of
 * its latest message can make the ones it no longer holds stale without
 * looking at anything else.
 */
#include "series.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define KM_WALK_DEPTH_MAX 8   /* objects/arrays nested deeper are not walked */
#define KM_WALK_PATH_MAX  256 /* longest field path ("a[].b.c") walked */
#define KM_HASH_MIN       64  /* initial buckets of either table */

/* The core's state topic of hosts (core/fleet.c): this host's view of the
   fleet. A remote host's copy of it would only repeat (and clash with, on
   the "host" label) what this host's says, so it feeds no series. */
#define KM_SERIES_TOPIC_HOSTS "hosts"

/* The series one state topic feeds, from one host. */
struct km_tseries {
    const struct km_topic *topic; /* the topic (borrowed from the bus) */
    int host;                     /* whose values: a host index (0: this host) */
    struct km_msg *msg;           /* the message walked last (a reference): a
                                     topic whose latest is still it is not
                                     walked again */
    uint64_t walk;                /* walks made of it; series set in walk N have seen N */
    struct km_series *first;      /* its series, linked by tnext */
    struct km_tseries *next;      /* next topic */
};

/* One collector. */
struct km_collector {
    km_series_collector fn; /* called by km_series_collect */
    void *arg;              /* its argument */
};

struct km_series_reg {
    struct km_bus *bus;              /* read by km_series_collect; NULL: none */
    struct km_family *families;      /* families, in creation order */
    struct km_family *families_last; /* the last of them */
    struct km_family **fbuckets;     /* family hash table */
    size_t nfbuckets;                /* its size, a power of two */
    size_t nfamilies;                /* families held */
    struct km_series **sbuckets;     /* series hash table (name and labels) */
    size_t nsbuckets;                /* its size, a power of two */
    size_t nseries;                  /* series held */
    size_t max;                      /* cap on nseries; 0: none */
    uint64_t refused;                /* series not created because of the cap */
    int cap_warned;                  /* the cap was logged; cleared below it */
    void (*drop)(struct km_series *s, void *arg); /* drop hook, or NULL */
    void *drop_arg;                               /* its argument */
    struct km_collector *collectors;              /* collectors, in the order added */
    size_t ncollectors;                           /* how many */
    struct km_tseries *topics;                    /* topics that fed series */
};

/* ---- hashing ---- */

static uint64_t km_fnv(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static uint64_t km_family_hash(const char *name)
{
    return km_fnv(0xcbf29ce484222325ULL, name);
}

static uint64_t km_series_hash(const char *name, const char *labels)
{
    /* the 0xff between them keeps ("ab", "c") apart from ("a", "bc") */
    return km_fnv(km_fnv(km_family_hash(name), "\xff"), labels);
}

/* The family table doubles when it holds as many families as buckets. A
   failed grow is ignored: a full table still works, only slower. */
static void km_family_table_grow(struct km_series_reg *reg)
{
    size_t nn = reg->nfbuckets * 2;
    struct km_family **nb;

    if (reg->nfamilies < reg->nfbuckets || !(nb = calloc(nn, sizeof *nb)))
        return;
    for (size_t i = 0; i < reg->nfbuckets; i++)
        for (struct km_family *f = reg->fbuckets[i], *n; f; f = n) {
            size_t b = km_family_hash(f->name) & (nn - 1);
            n = f->hnext;
            f->hnext = nb[b];
            nb[b] = f;
        }
    free(reg->fbuckets);
    reg->fbuckets = nb;
    reg->nfbuckets = nn;
}

/* The same for the series table. */
static void km_series_table_grow(struct km_series_reg *reg)
{
    size_t nn = reg->nsbuckets * 2;
    struct km_series **nb;

    if (reg->nseries < reg->nsbuckets || !(nb = calloc(nn, sizeof *nb)))
        return;
    for (size_t i = 0; i < reg->nsbuckets; i++)
        for (struct km_series *s = reg->sbuckets[i], *n; s; s = n) {
            size_t b = km_series_hash(s->family->name, s->labels) & (nn - 1);
            n = s->hnext;
            s->hnext = nb[b];
            nb[b] = s;
        }
    free(reg->sbuckets);
    reg->sbuckets = nb;
    reg->nsbuckets = nn;
}

/* ---- registry ---- */

struct km_series_reg *km_series_reg_new(size_t max_series)
{
    struct km_series_reg *reg = calloc(1, sizeof *reg);
    if (!reg)
        return NULL;
    reg->max = max_series;
    reg->nfbuckets = reg->nsbuckets = KM_HASH_MIN;
    reg->fbuckets = calloc(KM_HASH_MIN, sizeof *reg->fbuckets);
    reg->sbuckets = calloc(KM_HASH_MIN, sizeof *reg->sbuckets);
    if (!reg->fbuckets || !reg->sbuckets) {
        free(reg->fbuckets);
        free(reg->sbuckets);
        free(reg);
        return NULL;
    }
    return reg;
}

static void km_series_free_one(struct km_series_reg *reg, struct km_series *s)
{
    if (reg->drop)
        reg->drop(s, reg->drop_arg);
    free(s->labels);
    free(s);
}

void km_series_reg_free(struct km_series_reg *reg)
{
    if (!reg)
        return;
    struct km_family *f = reg->families;
    while (f) {
        struct km_family *fn = f->next;
        struct km_series *s = f->first;
        while (s) {
            struct km_series *sn = s->next;
            km_series_free_one(reg, s);
            s = sn;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    struct km_tseries *ts = reg->topics;
    while (ts) {
        struct km_tseries *n = ts->next;
        km_msg_unref(ts->msg);
        free(ts);
        ts = n;
    }
    free(reg->fbuckets);
    free(reg->sbuckets);
    free(reg->collectors);
    free(reg);
}

void km_series_attach(struct km_series_reg *reg, struct km_bus *bus)
{
    reg->bus = bus;
}

void km_series_detach(struct km_series_reg *reg)
{
    struct km_tseries *ts = reg->topics;

    reg->bus = NULL;
    /* the topics go with the bus: forget them, keep the series as stale */
    while (ts) {
        struct km_tseries *n = ts->next;
        for (struct km_series *s = ts->first; s; s = s->tnext)
            s->topic = NULL;
        for (struct km_series *s = ts->first, *sn; s; s = sn) {
            sn = s->tnext;
            s->tnext = NULL;
            km_series_stale(s);
        }
        km_msg_unref(ts->msg);
        free(ts);
        ts = n;
    }
    reg->topics = NULL;
}

void km_series_on_drop(struct km_series_reg *reg,
                       void (*fn)(struct km_series *s, void *arg), void *arg)
{
    reg->drop = fn;
    reg->drop_arg = arg;
}

int km_series_add_collector(struct km_series_reg *reg, km_series_collector fn, void *arg)
{
    struct km_collector *c =
        realloc(reg->collectors, (reg->ncollectors + 1) * sizeof *reg->collectors);
    if (!c)
        return -1;
    reg->collectors = c;
    c[reg->ncollectors].fn = fn;
    c[reg->ncollectors].arg = arg;
    reg->ncollectors++;
    return 0;
}

/* ---- names ---- */

static int km_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > KM_SERIES_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        int alpha =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

/* ---- lookup and creation ---- */

struct km_family *km_series_family(struct km_series_reg *reg, const char *name)
{
    struct km_family *f = reg->fbuckets[km_family_hash(name) & (reg->nfbuckets - 1)];
    while (f && strcmp(f->name, name) != 0)
        f = f->hnext;
    return f;
}

struct km_family *km_series_families(struct km_series_reg *reg)
{
    return reg->families;
}

struct km_series *km_series_find(struct km_series_reg *reg, const char *name,
                                 const char *labels)
{
    if (!labels)
        labels = "";
    struct km_series *s =
        reg->sbuckets[km_series_hash(name, labels) & (reg->nsbuckets - 1)];
    while (s && (strcmp(s->family->name, name) != 0 || strcmp(s->labels, labels) != 0))
        s = s->hnext;
    return s;
}

static struct km_family *km_family_new(struct km_series_reg *reg, const char *name,
                                       const char *help, enum km_series_type type)
{
    struct km_family *f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name)) || !(f->help = strdup(help ? help : name))) {
        if (f)
            free(f->name);
        free(f);
        return NULL;
    }
    f->type = type;
    km_family_table_grow(reg);
    size_t b = km_family_hash(name) & (reg->nfbuckets - 1);
    f->hnext = reg->fbuckets[b];
    reg->fbuckets[b] = f;
    if (reg->families_last)
        reg->families_last->next = f;
    else
        reg->families = f;
    reg->families_last = f;
    reg->nfamilies++;
    return f;
}

/* A series is refused at the cap: counted, logged once per crossing. */
static int km_series_at_cap(struct km_series_reg *reg, const char *name)
{
    if (!reg->max || reg->nseries < reg->max)
        return 0;
    reg->refused++;
    if (!reg->cap_warned) {
        km_log(KM_LOG_WARNING,
               "series: %zu series held, the most [history] max_series allows; %s and "
               "any other new series are not kept (katomon_series_refused_total counts "
               "them): raise max_series",
               reg->nseries, name);
        reg->cap_warned = 1;
    }
    return 1;
}

struct km_series *km_series_get(struct km_series_reg *reg, const char *name,
                                const char *help, enum km_series_type type,
                                const char *labels)
{
    if (!labels)
        labels = "";
    struct km_series *s = km_series_find(reg, name, labels);
    if (s)
        return s;
    if (!km_name_valid(name) || strlen(labels) > KM_SERIES_LABELS_MAX ||
        km_series_at_cap(reg, name))
        return NULL;
    struct km_family *f = km_series_family(reg, name);
    if (!f && !(f = km_family_new(reg, name, help, type)))
        return NULL;
    if (!(s = calloc(1, sizeof *s)) || !(s->labels = strdup(labels))) {
        free(s);
        return NULL; /* an empty new family is harmless: it is not exported */
    }
    s->family = f;
    km_series_table_grow(reg);
    size_t b = km_series_hash(name, labels) & (reg->nsbuckets - 1);
    s->hnext = reg->sbuckets[b];
    reg->sbuckets[b] = s;
    if (f->last)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    f->nseries++;
    reg->nseries++;
    return s;
}

void km_series_set(struct km_series *s, double value, int64_t time_us)
{
    s->value = value;
    s->time_us = time_us ? time_us : km_wall_us();
    s->live = 1;
}

void km_series_stale(struct km_series *s)
{
    s->live = 0;
}

static struct km_tseries *km_tseries_of(struct km_series_reg *reg,
                                        const struct km_topic *t, int host)
{
    struct km_tseries *ts = reg->topics;
    while (ts && (ts->topic != t || ts->host != host))
        ts = ts->next;
    return ts;
}

/* Takes s out of the hash table, its family's list and its topic's list. */
static void km_series_unlink(struct km_series_reg *reg, struct km_series *s)
{
    struct km_family *f = s->family;
    struct km_tseries *ts = s->topic ? km_tseries_of(reg, s->topic, s->host) : NULL;
    struct km_series **p, *prev = NULL;

    for (p = ts ? &ts->first : NULL; p && *p; p = &(*p)->tnext)
        if (*p == s) {
            *p = s->tnext;
            break;
        }
    p = &reg->sbuckets[km_series_hash(f->name, s->labels) & (reg->nsbuckets - 1)];
    for (; *p; p = &(*p)->hnext)
        if (*p == s) {
            *p = s->hnext;
            break;
        }
    for (p = &f->first; *p; prev = *p, p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    if (f->last == s)
        f->last = prev;
}

/* Takes an empty family out of the hash table and the list, and frees it. */
static void km_family_drop(struct km_series_reg *reg, struct km_family *f)
{
    struct km_family **p, *prev = NULL;

    p = &reg->fbuckets[km_family_hash(f->name) & (reg->nfbuckets - 1)];
    for (; *p; p = &(*p)->hnext)
        if (*p == f) {
            *p = f->hnext;
            break;
        }
    for (p = &reg->families; *p; prev = *p, p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            break;
        }
    if (reg->families_last == f)
        reg->families_last = prev;
    reg->nfamilies--;
    free(f->name);
    free(f->help);
    free(f);
}

void km_series_drop(struct km_series_reg *reg, struct km_series *s)
{
    struct km_family *f = s->family;

    km_series_unlink(reg, s);
    f->nseries--;
    reg->nseries--;
    if (reg->max && reg->nseries < reg->max)
        reg->cap_warned = 0;
    km_series_free_one(reg, s);
    if (!f->nseries)
        km_family_drop(reg, f);
}

/* ---- counts ---- */

size_t km_series_count(const struct km_series_reg *reg)
{
    return reg->nseries;
}

size_t km_series_live(const struct km_series_reg *reg)
{
    size_t n = 0;
    for (const struct km_family *f = reg->families; f; f = f->next)
        for (const struct km_series *s = f->first; s; s = s->next)
            n += s->live != 0;
    return n;
}

uint64_t km_series_refused(const struct km_series_reg *reg)
{
    return reg->refused;
}

size_t km_series_max(const struct km_series_reg *reg)
{
    return reg->max;
}

/* ---- walking a state message ---- */

/* One walk of one message. */
struct km_walk {
    struct km_series_reg *reg;             /* the registry */
    struct km_tseries *ts;                 /* the topic's series */
    const char *tname;                     /* the topic's name */
    const struct km_metric *table;         /* the topic's km_metric table, or NULL */
    int64_t t_us;                          /* the message's time */
    char path[KM_WALK_PATH_MAX];           /* path of the field being walked */
    char labels[KM_SERIES_LABELS_MAX + 1]; /* labels of the item being walked */
};

static const struct km_metric *km_metric_find(const struct km_walk *w, const char *path)
{
    for (const struct km_metric *m = w->table; m && m->path; m++)
        if (strcmp(m->path, path) == 0)
            return m;
    return NULL;
}

/* Appends `suffix` to w->path at len; the new length, or 0 when too long. */
static size_t km_path_push(struct km_walk *w, size_t len, const char *sep,
                           const char *part)
{
    /* memcpy, not snprintf: this runs for every field of every message */
    size_t s = len ? strlen(sep) : 0, p = strlen(part);
    if (len + s + p >= sizeof w->path)
        return 0;
    memcpy(w->path + len, sep, s);
    memcpy(w->path + len + s, part, p + 1);
    return len + s + p;
}

/* The derived name: katomon_TOPIC_PATH with everything but [a-zA-Z0-9_]
   turned into '_' and brackets dropped. */
static void km_derive_name(const struct km_walk *w, char *out, size_t n)
{
    size_t k = (size_t)snprintf(out, n, "katomon_%s_", w->tname);
    for (const char *p = w->path; *p && k + 1 < n; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '[' || c == ']' || c == '{' || c == '}')
            continue;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || c == '_';
        out[k++] = ok ? (char)c : '_';
    }
    out[k < n ? k : n - 1] = '\0';
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a'); /* snake_case: no capitals */
}

/* Sets one series from the walk; a series fed by another topic is left
   alone. help is only read when the series is new (NULL: the path's). */
static void km_walk_set(struct km_walk *w, const char *name, const char *help,
                        enum km_series_type type, double value)
{
    struct km_series *s = km_series_find(w->reg, name, w->labels);
    char derived[KM_WALK_PATH_MAX + 80];

    if (!s && !help) {
        snprintf(derived, sizeof derived, "%s of topic %s", w->path, w->tname);
        help = derived;
    }
    if (!s)
        s = km_series_get(w->reg, name, help, type, w->labels);
    if (!s || (s->topic && (s->topic != w->ts->topic || s->host != w->ts->host)))
        return;
    if (!s->topic) {
        s->topic = w->ts->topic;
        s->host = w->ts->host;
        s->tnext = w->ts->first;
        w->ts->first = s;
    }
    km_series_set(s, value, w->t_us);
    s->seen = w->ts->walk;
}

/* A number at w->path. */
static void km_walk_number(struct km_walk *w, const struct km_metric *m, double v)
{
    char name[KM_SERIES_NAME_MAX + 8];
    int counter = m && (m->flags & KM_METRIC_COUNTER);
    size_t n;

    if (m && m->name && (n = strlen(m->name)) < sizeof name - 8 - 6) {
        memcpy(name, "katomon_", 8);
        memcpy(name + 8, m->name, n + 1);
        n += 8;
    } else {
        km_derive_name(w, name, sizeof name - 6);
        n = strlen(name);
    }
    if (counter && (n < 6 || strcmp(name + n - 6, "_total") != 0))
        memcpy(name + n, "_total", 7);
    if (m && m->scale != 0)
        v *= m->scale;
    km_walk_set(w, name, m ? m->help : NULL,
                counter ? KM_SERIES_COUNTER : KM_SERIES_GAUGE, v);
}

/* "_source": katomon_source_up and katomon_source_failures. */
static void km_walk_source(struct km_walk *w, json_t *src)
{
    const struct km_metric *m = km_metric_find(w, "_source");
    const char *name = m && m->name ? m->name : w->tname;
    json_t *healthy = json_object_get(src, "healthy");
    json_t *failures = json_object_get(src, "failures");

    if (m && (m->flags & KM_METRIC_IGNORE))
        return;
    if (km_labels_add(w->labels, sizeof w->labels, "source", name) != 0 ||
        km_labels_add(w->labels, sizeof w->labels, "topic", w->tname) != 0)
        return;
    if (json_is_boolean(healthy))
        km_walk_set(w, "katomon_source_up",
                    "1 when the source answered its last poll correctly, 0 when not",
                    KM_SERIES_GAUGE, json_is_true(healthy));
    if (json_is_integer(failures))
        km_walk_set(w, "katomon_source_failures",
                    "Failed polls of the source in a row (0 when it is healthy)",
                    KM_SERIES_GAUGE, (double)json_integer_value(failures));
}

static void km_walk_value(struct km_walk *w, json_t *v, size_t len, int depth);

static void km_walk_object(struct km_walk *w, json_t *obj, size_t len, int depth)
{
    const char *key;
    json_t *v;

    if (depth > KM_WALK_DEPTH_MAX)
        return;
    json_object_foreach(obj, key, v)
    {
        size_t n;
        if (depth == 0 && strcmp(key, "_source") == 0) {
            if (json_is_object(v)) {
                char saved[sizeof w->labels];
                memcpy(saved, w->labels, sizeof saved);
                km_walk_source(w, v);
                memcpy(w->labels, saved, sizeof saved);
            }
            continue;
        }
        if ((n = km_path_push(w, len, ".", key)) != 0)
            km_walk_value(w, v, n, depth + 1);
        w->path[len] = '\0';
    }
}

/* The label of one array item: from its field, else its index. */
static void km_item_label(const json_t *item, const char *field, size_t index, char *out,
                          size_t n)
{
    const json_t *v = json_is_object(item) ? json_object_get(item, field) : NULL;
    size_t len;
    if (json_is_string(v) && (len = json_string_length(v)) < n)
        memcpy(out, json_string_value(v), len + 1);
    else if (json_is_string(v))
        snprintf(out, n, "%s", json_string_value(v)); /* cut to fit */
    else if (json_is_integer(v))
        snprintf(out, n, "%lld", (long long)json_integer_value(v));
    else
        snprintf(out, n, "%zu", index);
}

/* Adds the labels of one item of the array at w->path (spec "L=F,..." or
   the default: the array's name without a final 's' = name, else id). */
static int km_item_labels(struct km_walk *w, const struct km_metric *m, size_t len,
                          const json_t *item, size_t index)
{
    char value[256];

    if (m && m->labels) {
        const char *p = m->labels;
        while (*p) {
            char label[72], field[72];
            size_t e = strcspn(p, ","), eq = strcspn(p, "=");
            if (eq >= e || eq >= sizeof label || e - eq - 1 >= sizeof field)
                return -1;
            memcpy(label, p, eq);
            label[eq] = '\0';
            memcpy(field, p + eq + 1, e - eq - 1);
            field[e - eq - 1] = '\0';
            km_item_label(item, field, index, value, sizeof value);
            if (km_labels_add(w->labels, sizeof w->labels, label, value) != 0)
                return -1;
            p += e + (p[e] == ',');
        }
        return 0;
    }
    /* default: the array's own key, singular */
    const char *dot = strrchr(w->path, '.');
    const char *key = dot && dot < w->path + len ? dot + 1 : w->path;
    char label[72];
    size_t kl = strlen(key) - 2; /* the path ends in "[]" */
    if (kl == 0 || kl >= sizeof label)
        return -1;
    memcpy(label, key, kl);
    label[kl] = '\0';
    if (kl > 1 && label[kl - 1] == 's')
        label[kl - 1] = '\0';
    const json_t *name = json_is_object(item) ? json_object_get(item, "name") : NULL;
    km_item_label(item, json_is_string(name) ? "name" : "id", index, value, sizeof value);
    return km_labels_add(w->labels, sizeof w->labels, label, value);
}

static void km_walk_array(struct km_walk *w, json_t *arr, size_t len, int depth)
{
    size_t n = km_path_push(w, len, "", "[]"), i;
    const struct km_metric *m;
    char saved[sizeof w->labels];
    json_t *item;

    if (!n)
        return;
    m = km_metric_find(w, w->path);
    if (m && (m->flags & KM_METRIC_IGNORE))
        return;
    memcpy(saved, w->labels, sizeof saved);
    json_array_foreach(arr, i, item)
    {
        if (!json_is_object(item))
            continue;
        if (km_item_labels(w, m, n, item, i) == 0)
            km_walk_object(w, item, n, depth + 1);
        w->path[n] = '\0';
        memcpy(w->labels, saved, sizeof saved);
    }
}

/* An object whose keys are items ("databases{}", labels "database"). */
static void km_walk_keyed(struct km_walk *w, const struct km_metric *m, json_t *obj,
                          size_t n, int depth)
{
    char saved[sizeof w->labels];
    const char *key;
    json_t *v;

    memcpy(saved, w->labels, sizeof saved);
    json_object_foreach(obj, key, v)
    {
        if (json_is_object(v) &&
            km_labels_add(w->labels, sizeof w->labels, m->labels, key) == 0)
            km_walk_object(w, v, n, depth + 1);
        w->path[n] = '\0';
        memcpy(w->labels, saved, sizeof saved);
    }
}

static void km_walk_value(struct km_walk *w, json_t *v, size_t len, int depth)
{
    const struct km_metric *m = km_metric_find(w, w->path);
    size_t n;

    if (m && (m->flags & KM_METRIC_IGNORE))
        return;
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        km_walk_number(w, m, (double)json_integer_value(v));
        break;
    case JSON_REAL:
        km_walk_number(w, m, json_real_value(v));
        break;
    case JSON_OBJECT:
        if ((n = km_path_push(w, len, "", "{}")) != 0 &&
            (m = km_metric_find(w, w->path)) != NULL && m->labels) {
            if (!(m->flags & KM_METRIC_IGNORE))
                km_walk_keyed(w, m, v, n, depth);
            w->path[len] = '\0';
            break;
        }
        w->path[len] = '\0';
        km_walk_object(w, v, len, depth);
        break;
    case JSON_ARRAY:
        km_walk_array(w, v, len, depth);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        if (m) /* a boolean is a 0/1 series only when the table names it */
            km_walk_number(w, m, json_is_true(v));
        break;
    default: /* strings, nulls and unnamed booleans are not series */
        break;
    }
    w->path[len] = '\0';
}

void km_series_ingest(struct km_series_reg *reg, struct km_topic *topic,
                      struct km_msg *msg)
{
    int host = km_msg_host(msg);
    struct km_tseries *ts = km_tseries_of(reg, topic, host);
    json_t *body = km_msg_json(msg);

    if (!ts) {
        if (!(ts = calloc(1, sizeof *ts)))
            return;
        ts->topic = topic;
        ts->host = host;
        ts->next = reg->topics;
        reg->topics = ts;
    }
    if (ts->msg != msg) {
        km_msg_unref(ts->msg);
        ts->msg = km_msg_ref(msg);
    }
    ts->walk++;
    if (json_is_object(body)) {
        struct km_walk w = {.reg = reg,
                            .ts = ts,
                            .tname = km_topic_name(topic),
                            .table = km_topic_metrics(topic),
                            .t_us = km_msg_time_us(msg)};
        /* a remote host's series: its topic's series, labelled with it */
        if (host == 0 ||
            km_labels_add(w.labels, sizeof w.labels, "host", km_msg_host_name(msg)) == 0)
            km_walk_object(&w, body, 0, 0);
    }
    /* what this message no longer holds has ended */
    for (struct km_series *s = ts->first; s; s = s->tnext)
        if (s->seen != ts->walk)
            km_series_stale(s);
}

/* Walks t's latest value of each host that changed since the last walk. */
static void km_collect_topic(struct km_topic *t, void *arg)
{
    struct km_series_reg *reg = arg;
    unsigned nh;

    if (km_topic_kind(t) != KM_TOPIC_STATE)
        return;
    nh = strcmp(km_topic_name(t), KM_SERIES_TOPIC_HOSTS) == 0
             ? 1
             : km_bus_host_count(reg->bus);
    for (unsigned h = 0; h < nh; h++) {
        struct km_msg *m = km_topic_latest_host(t, (int)h);
        struct km_tseries *ts;
        if (!m)
            continue;
        ts = km_tseries_of(reg, t, (int)h);
        if (ts && ts->msg == m)
            continue;
        km_series_ingest(reg, t, m);
    }
}

void km_series_collect(struct km_series_reg *reg)
{
    if (reg->bus)
        km_bus_foreach(reg->bus, km_collect_topic, reg);
    for (size_t i = 0; i < reg->ncollectors; i++)
        reg->collectors[i].fn(reg, reg->collectors[i].arg);
}
