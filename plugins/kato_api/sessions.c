/*
 * sessions.c - KATO's session listing for the original dashboard (kato_api):
 *
 *   GET /api/v1/sessions?skip&limit&status&search
 *   GET /api/v1/sessions/statistics/overview
 *
 * KATO has no endpoint listing its sessions; they live in its Redis
 * (reference/kato-redis.md). A listing reads the active index with SSCAN
 * (never KEYS), at most max_sessions members, then the session keys with
 * MGET in batches of KA_MGET_BATCH, one command at a time. An index member
 * whose key has expired is dropped and counted (expired_index_members).
 * Of each session only the small fields are decoded and sent (session.c):
 * the original's fields plus created_at, last_active, expires_at,
 * access_count. Sorted by created_at, newest first.
 *
 * The result (a snapshot) is reused for cache_ttl seconds by every page,
 * filter and the statistics, and concurrent requests wait for one build.
 */
#define _GNU_SOURCE /* strcasestr */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>
#include <katomon/util.h>

#include "kato_api.h"

#define KA_SCAN_COUNT  "1000" /* SSCAN COUNT hint */
#define KA_MGET_BATCH  32     /* keys per MGET: a session can be ~100 KB */
#define KA_WAITERS_MAX 256    /* requests waiting for one listing */

/* One listing of KATO's sessions. */
struct ka_snapshot {
    struct ka_session *items; /* live sessions, newest first (owned) */
    size_t n;                 /* their number */
    size_t expired;           /* index members whose key is gone */
    size_t invalid;           /* index members that cannot be ids (skipped) */
    size_t scanned;           /* index members read */
    long long index_size;     /* SCARD of the index */
    int truncated;            /* the index has more than max_sessions members */
    double built_at;          /* ka_now() when done */
    int64_t built_wall;       /* the same, µs since the epoch */
};

/* A listing being built: one Redis command in flight at any time. */
struct ka_build {
    struct ka_snapshot *snap; /* being filled (owned) */
    char **members;           /* index members read (owned) */
    size_t n_members;         /* their number */
    size_t cap;               /* allocated */
    size_t next;              /* first member of the next MGET */
    size_t batch;             /* members in the MGET in flight */
};

/* What one waiting request asked for. */
enum ka_ask { KA_ASK_LIST, KA_ASK_STATS };

/* One request waiting for a listing. */
struct ka_swaiter {
    struct km_rest_pending *p;  /* the core's handle */
    enum ka_ask ask;            /* listing or statistics */
    long long skip;             /* listing: sessions skipped */
    long long limit;            /* listing: page size */
    char status[64];            /* listing: status filter; "" none */
    char search[KA_MAX_ID + 1]; /* listing: substring of id or node; "" none */
    struct ka_swaiter *next;    /* sessions' list */
};

struct ka_sessions {
    struct ka_snapshot *snap;   /* the latest listing (owned); NULL: none */
    struct ka_build *build;     /* the listing being built (owned); NULL: none */
    struct ka_swaiter *waiters; /* requests waiting for it (owned) */
    size_t n_waiters;           /* their number */
};

/* ---- snapshots ---- */

static void snapshot_free(struct ka_snapshot *snap)
{
    if (!snap)
        return;
    for (size_t i = 0; i < snap->n; i++)
        ka_session_clear(&snap->items[i]);
    free(snap->items);
    free(snap);
}

/* Newest first; unknown times last; then by id. */
static int by_created_desc(const void *a, const void *b)
{
    const struct ka_session *x = a, *y = b;

    if (x->created_us != y->created_us)
        return x->created_us > y->created_us ? -1 : 1;
    return strcmp(x->id, y->id);
}

static int match(const struct ka_swaiter *w, const struct ka_session *s)
{
    /* every session in KATO's active index is active; KATO has no other state */
    if (w->status[0] && strcasecmp(w->status, "active") != 0)
        return 0;
    return !w->search[0] || strcasestr(s->id, w->search) ||
           (s->node && strcasestr(s->node, w->search));
}

static json_t *answer_list(const struct ka_snapshot *snap, const struct ka_swaiter *w)
{
    unsigned long long total = 0, skip = (unsigned long long)w->skip;
    unsigned long long limit = (unsigned long long)w->limit;
    json_t *page = json_array(), *out;
    char when[32];

    for (size_t i = 0; i < snap->n; i++) {
        if (!match(w, &snap->items[i]))
            continue;
        if (total >= skip && total - skip < limit)
            json_array_append_new(page, ka_session_json(&snap->items[i]));
        total++;
    }
    out = json_pack(
        "{s:o, s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:I, s:I, s:I, s:b, s:s}", "sessions",
        page, "total", (json_int_t)total, "skip", (json_int_t)skip, "limit",
        (json_int_t)limit, "page", (json_int_t)(skip / limit + 1), "pages",
        (json_int_t)((total + limit - 1) / limit), "source", "redis", "sort",
        "created_at desc", "index_members", (json_int_t)snap->index_size, "scanned",
        (json_int_t)snap->scanned, "expired_index_members", (json_int_t)snap->expired,
        "truncated", snap->truncated, "generated_at",
        km_format_iso(snap->built_wall, 3, when, sizeof when));
    if (out && snap->invalid)
        json_object_set_new(out, "invalid_index_members",
                            json_integer((json_int_t)snap->invalid));
    if (out && snap->truncated) {
        char note[200];
        snprintf(note, sizeof note,
                 "only the first %zu members of " KA_ACTIVE_INDEX
                 " were read ([plugin kato_api] max_sessions)",
                 snap->scanned);
        json_object_set_new(out, "note", json_string(note));
    }
    return out;
}

static json_t *answer_stats(const struct ka_snapshot *snap)
{
    char when[32];

    return json_pack(
        "{s:I, s:I, s:i, s:I, s:s, s:s, s:s, s:I, s:b}", "redis_total",
        (json_int_t)(snap->n + snap->expired), "redis_active", (json_int_t)snap->n,
        "redis_idle", 0, "redis_expired", (json_int_t)snap->expired, "source", "redis",
        "note",
        "From KATO's Redis: redis_active counts the sessions in its active index whose "
        "key exists, redis_expired the index members whose key has expired (KATO drops "
        "them lazily); KATO has no idle state. The live count is GET "
        "/api/v1/sessions/count.",
        "timestamp", km_format_iso(km_wall_us(), 3, when, sizeof when), "index_members",
        (json_int_t)snap->index_size, "truncated", snap->truncated);
}

static json_t *answer_for(const struct ka_snapshot *snap, const struct ka_swaiter *w)
{
    return w->ask == KA_ASK_LIST ? answer_list(snap, w) : answer_stats(snap);
}

/* ---- building a listing ---- */

static void build_free(struct ka_build *b)
{
    for (size_t i = 0; i < b->n_members; i++)
        free(b->members[i]);
    free(b->members);
    snapshot_free(b->snap);
    free(b);
}

/* The build ended (snap NULL: failed, why says so): every waiter is answered. */
static void build_end(struct ka_snapshot *snap, const char *why)
{
    struct ka_sessions *S = ka.sessions;
    struct ka_swaiter *w = S->waiters;
    char detail[700];

    build_free(S->build);
    S->build = NULL;
    S->waiters = NULL;
    S->n_waiters = 0;
    snapshot_free(S->snap);
    S->snap = snap; /* after a failure: none, so no stale listing is served */
    snprintf(detail, sizeof detail, "cannot list KATO's sessions: %s", why ? why : "");
    while (w) {
        struct ka_swaiter *next = w->next;
        if (snap)
            ka.host->rest_finish(ka.ctx, w->p, 200, answer_for(snap, w), NULL);
        else
            ka_finish_detail(w->p, 503, detail);
        free(w);
        w = next;
    }
}

static void build_fail(const char *why)
{
    build_end(NULL, why);
}

static void on_mget(struct redisReply *rep, const char *error, void *arg);
static void on_sscan(struct redisReply *rep, const char *error, void *arg);

/* Sends the next command of the build (SSCAN, MGET), or finishes it. */
static void build_step(const char *cursor);

static int by_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* SSCAN can return a member twice: sort, and keep one of each. */
static void unique_members(struct ka_build *b)
{
    size_t o = 0;

    qsort(b->members, b->n_members, sizeof *b->members, by_str);
    for (size_t i = 0; i < b->n_members; i++) {
        if (o && strcmp(b->members[o - 1], b->members[i]) == 0)
            free(b->members[i]);
        else
            b->members[o++] = b->members[i];
    }
    b->n_members = o;
}

/* Finishes the listing: sorted, kept, every waiter answered. */
static void build_done(void)
{
    struct ka_build *b = ka.sessions->build;
    struct ka_snapshot *snap = b->snap;

    b->snap = NULL;
    if (snap->n)
        qsort(snap->items, snap->n, sizeof *snap->items, by_created_desc);
    snap->built_at = ka_now();
    snap->built_wall = km_wall_us();
    build_end(snap, NULL);
}

static void send_mget(void)
{
    struct ka_build *b = ka.sessions->build;
    size_t n =
        b->n_members - b->next < KA_MGET_BATCH ? b->n_members - b->next : KA_MGET_BATCH;
    const char *argv[KA_MGET_BATCH + 1];
    size_t lens[KA_MGET_BATCH + 1];
    char *keys[KA_MGET_BATCH];
    const char *why = NULL;
    int rc;

    argv[0] = "MGET";
    lens[0] = 4;
    for (size_t i = 0; i < n; i++) {
        const char *id = b->members[b->next + i];
        lens[i + 1] = sizeof KA_SESSION_PREFIX - 1 + strlen(id);
        if (!(keys[i] = malloc(lens[i + 1] + 1))) {
            while (i-- > 0)
                free(keys[i]);
            build_fail("out of memory");
            return;
        }
        snprintf(keys[i], lens[i + 1] + 1, "%s%s", KA_SESSION_PREFIX, id);
        argv[i + 1] = keys[i];
    }
    b->batch = n;
    rc = ka_redis_cmd(ka.redis, on_mget, NULL, (int)n + 1, argv, lens, &why);
    for (size_t i = 0; i < n; i++)
        free(keys[i]); /* hiredis copied the command */
    if (rc < 0)
        build_fail(why);
}

static void build_step(const char *cursor)
{
    struct ka_build *b = ka.sessions->build;
    const char *why = NULL;

    if (cursor) {
        const char *argv[] = {"SSCAN", KA_ACTIVE_INDEX, cursor, "COUNT", KA_SCAN_COUNT};
        if (ka_redis_cmd(ka.redis, on_sscan, NULL, 5, argv, NULL, &why) < 0)
            build_fail(why);
        return;
    }
    if (b->next == 0 && b->n_members && !b->snap->items) {
        /* the index is read: room for every member's session */
        unique_members(b);
        if (!(b->snap->items = calloc(b->n_members, sizeof *b->snap->items))) {
            build_fail("out of memory");
            return;
        }
    }
    if (b->next < b->n_members)
        send_mget();
    else
        build_done();
}

/* A member that can be a session id (bounded, no control bytes). */
static int good_member(const redisReply *m)
{
    if (m->type != REDIS_REPLY_STRING || m->len == 0 || m->len > KA_MAX_ID)
        return 0;
    for (size_t i = 0; i < m->len; i++)
        if ((unsigned char)m->str[i] < 0x20 || m->str[i] == 0x7f)
            return 0;
    return 1;
}

/* Takes the members of one SSCAN reply, within max_sessions. */
static int take_members(struct ka_build *b, const redisReply *list)
{
    for (size_t i = 0; i < list->elements; i++) {
        const redisReply *m = list->element[i];
        if (!good_member(m)) {
            b->snap->invalid++;
            continue;
        }
        if (b->n_members == ka.max_sessions) {
            b->snap->truncated = 1;
            return 0;
        }
        if (b->n_members == b->cap) {
            size_t cap = b->cap ? b->cap * 2 : 256;
            char **mm = realloc(b->members, cap * sizeof *mm);
            if (!mm)
                return -1;
            b->members = mm;
            b->cap = cap;
        }
        if (!(b->members[b->n_members] = strndup(m->str, m->len)))
            return -1;
        b->n_members++;
    }
    return 0;
}

static void on_sscan(struct redisReply *rep, const char *error, void *arg)
{
    struct ka_build *b = ka.sessions->build;
    char cursor[32];

    if (!rep) {
        build_fail(error);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[0]->len >= sizeof cursor ||
        rep->element[1]->type != REDIS_REPLY_ARRAY) {
        build_fail("Redis sent an unexpected SSCAN reply");
        return;
    }
    memcpy(cursor, rep->element[0]->str, rep->element[0]->len);
    cursor[rep->element[0]->len] = '\0';
    if (take_members(b, rep->element[1]) < 0) {
        build_fail("out of memory");
        return;
    }
    if (!b->snap->truncated && strcmp(cursor, "0") != 0) {
        build_step(cursor);
        return;
    }
    b->snap->scanned = b->n_members;
    if (strcmp(cursor, "0") != 0)
        b->snap->truncated = 1;
    build_step(NULL);
}

static void on_mget(struct redisReply *rep, const char *error, void *arg)
{
    struct ka_build *b = ka.sessions->build;
    struct ka_snapshot *snap = b->snap;

    if (!rep) {
        build_fail(error);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != b->batch) {
        build_fail("Redis sent an unexpected MGET reply");
        return;
    }
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *v = rep->element[i];
        const char *id = b->members[b->next + i];
        if (v->type == REDIS_REPLY_NIL) {
            snap->expired++; /* in the index, key expired */
            continue;
        }
        if (ka_session_from(&snap->items[snap->n], id,
                            v->type == REDIS_REPLY_STRING ? v->str : "",
                            v->type == REDIS_REPLY_STRING ? v->len : 0, NULL) < 0) {
            build_fail("out of memory");
            return;
        }
        snap->n++;
    }
    b->next += b->batch;
    build_step(NULL);
}

static void on_scard(struct redisReply *rep, const char *error, void *arg)
{
    struct ka_build *b = ka.sessions->build;

    if (!rep) {
        build_fail(error);
        return;
    }
    b->snap->index_size = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    build_step("0");
}

/* Starts a build (SCARD, then SSCAN...). 0, or -1 with *why. */
static int build_start(const char **why)
{
    struct ka_build *b = calloc(1, sizeof *b);
    const char *argv[] = {"SCARD", KA_ACTIVE_INDEX};

    *why = "out of memory";
    if (!b || !(b->snap = calloc(1, sizeof *b->snap))) {
        free(b);
        return -1;
    }
    ka.sessions->build = b;
    if (ka_redis_cmd(ka.redis, on_scard, NULL, 2, argv, NULL, why) < 0) {
        build_free(b);
        ka.sessions->build = NULL;
        return -1;
    }
    return 0;
}

/* ---- GET /api/v1/sessions, /sessions/statistics/overview ---- */

struct ka_sessions *ka_sessions_new(void)
{
    return calloc(1, sizeof(struct ka_sessions));
}

void ka_sessions_free(struct ka_sessions *S)
{
    if (!S)
        return;
    /* a build still running ends with Redis (freed first, see release_all) */
    if (S->build)
        build_free(S->build);
    while (S->waiters) {
        struct ka_swaiter *w = S->waiters;
        S->waiters = w->next;
        free(w); /* its request is answered 503 by the core */
    }
    snapshot_free(S->snap);
    free(S);
}

/* The answer for w: at once from a fresh listing, or later from a build
   (started when none runs). A handler's return value. */
static int want(const struct km_rest_call *call, struct ka_swaiter *w, json_t **reply,
                const char **detail)
{
    struct ka_sessions *S = ka.sessions;
    static char why[600];
    const char *err;
    struct ka_swaiter *copy;

    if (S->snap && !S->build && ka_now() - S->snap->built_at < ka.cache_ttl) {
        *reply = answer_for(S->snap, w);
        return *reply ? 200 : 500;
    }
    if (S->n_waiters >= KA_WAITERS_MAX || !(copy = malloc(sizeof *copy))) {
        *detail = "too many requests waiting for KATO's Redis; try again";
        return 503;
    }
    if (!S->build && build_start(&err) < 0) {
        free(copy);
        snprintf(why, sizeof why, "cannot list KATO's sessions: %s", err);
        *detail = why;
        return 503;
    }
    *copy = *w;
    copy->p = call->pending;
    copy->next = S->waiters;
    S->waiters = copy;
    S->n_waiters++;
    return KM_REST_LATER;
}

/* 503 when there is no Redis to read; 0 otherwise. */
static int need_redis(const char *route, const char **detail)
{
    static char why[300];

    if (ka.redis)
        return 0;
    snprintf(why, sizeof why,
             "GET %s reads KATO's Redis, which is not configured: set redis_url in "
             "[plugin kato_api] (e.g. redis://127.0.0.1:6379/0)",
             route);
    *detail = why;
    return 503;
}

/* A text query parameter of at most len - 1 bytes; -1 with a 422 when
   longer. */
static int query_text(const struct km_rest_call *call, const char *name, char *buf,
                      size_t len, json_t **reply)
{
    char big[2048];
    const char *v = ka.host->rest_param(call, name, big, sizeof big);

    buf[0] = '\0';
    if (!v && !ka_query_has(call->query, name))
        return 0;
    if (!v || strlen(v) >= len) {
        char msg[96];
        if (!v) /* longer than big, or with a NUL byte */
            v = "(too long)";
        snprintf(msg, sizeof msg, "String should have at most %zu characters", len - 1);
        *reply = json_pack("{s:[{s:s, s:[s,s], s:s, s:s, s:{s:I}}]}", "detail", "type",
                           "string_too_long", "loc", "query", name, "msg", msg, "input",
                           v, "ctx", "max_length", (json_int_t)(len - 1));
        return -1;
    }
    memcpy(buf, v, strlen(v) + 1);
    return 0;
}

int ka_sessions_list(const struct km_rest_call *call, json_t **reply, const char **detail,
                     void *arg)
{
    struct ka_swaiter w = {.ask = KA_ASK_LIST};

    if (ka_query_int(call, "skip", 0, 0, LLONG_MAX, &w.skip, reply) < 0 ||
        ka_query_int(call, "limit", 50, 1, 200, &w.limit, reply) < 0 ||
        query_text(call, "status", w.status, sizeof w.status, reply) < 0 ||
        query_text(call, "search", w.search, sizeof w.search, reply) < 0)
        return 422;
    if (need_redis("/api/v1/sessions", detail))
        return 503;
    return want(call, &w, reply, detail);
}

int ka_sessions_stats(const struct km_rest_call *call, json_t **reply,
                      const char **detail, void *arg)
{
    struct ka_swaiter w = {.ask = KA_ASK_STATS};

    if (need_redis("/api/v1/sessions/statistics/overview", detail))
        return 503;
    return want(call, &w, reply, detail);
}
