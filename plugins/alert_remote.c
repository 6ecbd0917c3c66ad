/*
 * alert_remote.c - alert_manager's REST answers about another host (see
 * alert_remote.h).
 *
 * Read marks and clears are this host's history's business: a remote
 * host's alerts carry no "read" here (they count as unread), and marking
 * or clearing them is done on that host (alert_manager.c refuses it).
 * Their entries are folded as this host's history is: a re-send ("repeats"
 * > 0) sets "repeats" and "last_seen" of the entry with its id while that
 * one is still in the ring, so another host's history shows its
 * transitions too.
 */
#include "alert_remote.h"

#include <stdio.h>
#include <string.h>

#include <katomon/util.h>

#define HOST_PARAM_MAX 4096 /* a longer query parameter reads as absent: take it all */

int am_remote_host(const struct km_host *host, struct km_ctx *ctx,
                   const struct km_rest_call *call, int *h, json_t **reply)
{
    char name[HOST_PARAM_MAX];
    const char *want = host->rest_param(call, "host", name, sizeof name);
    int found = -1;

    *h = 0;
    if (!want || !*want) /* ?host= (empty): this host, as no parameter */
        return 0;
    if (KM_HOST_HAS(host, replay_host) && host->host_find) /* NULL: a core mid-change */
        found = host->host_find(ctx, want);
    if (found >= 0) {
        *h = found;
        return 0;
    }
    char detail[128];
    snprintf(detail, sizeof detail, "no host %.*s", 80, want);
    *reply = json_pack("{s:s}", "detail", detail);
    return 404;
}

/* What take_batch fills. */
struct take {
    const struct km_host *host; /* the core */
    json_t *entries;            /* the answer, oldest first */
};

/* The entry with this id (borrowed; the latest one), or NULL. */
static json_t *find(json_t *entries, const char *id)
{
    for (size_t i = json_array_size(entries); id && i-- > 0;) {
        json_t *e = json_array_get(entries, i);
        if (strcmp(json_string_value(json_object_get(e, "id")) ?: "", id) == 0)
            return e;
    }
    return NULL;
}

/* replay_host's callback: each alert of one batch into the entries. */
static void take_batch(struct km_topic *topic, struct km_msg *msg, void *arg)
{
    struct take *tk = arg;
    json_t *entries = tk->entries;
    json_t *body = tk->host->msg_json(msg);
    json_t *when = json_object_get(body, "timestamp"), *id = json_object_get(body, "id");
    json_t *a;
    size_t i;

    json_array_foreach(json_object_get(body, "alerts"), i, a)
    {
        json_t *repeats = json_object_get(a, "repeats");
        if (json_integer_value(repeats) > 0 && json_is_string(when)) {
            json_t *open = find(entries, json_string_value(json_object_get(a, "id")));
            if (open) { /* a re-send: counted on its record, as here */
                json_object_set(open, "repeats", repeats);
                json_object_set(open, "last_seen", when);
                continue;
            }
        }
        json_t *entry = json_is_object(a) ? json_deep_copy(a) : NULL;
        if (!entry)
            continue;
        if (json_is_string(when))
            json_object_set(entry, "timestamp", when);
        if (json_is_string(id))
            json_object_set(entry, "batch", id);
        if (repeats && json_is_string(when)) /* a katomon of issue 16 or later */
            json_object_set(entry, "last_seen", when);
        json_array_append_new(entries, entry);
    }
}

json_t *am_remote_entries(const struct km_host *host, struct km_ctx *ctx,
                          struct km_topic *topic, int h)
{
    json_t *entries = json_array();
    struct take tk = {host, entries};

    if (entries && topic && KM_HOST_HAS(host, replay_host) && host->replay_host)
        host->replay_host(ctx, topic, h, 0, take_batch, &tk); /* KM_EGONE: the rest */
    return entries;
}

json_t *am_remote_active(json_t *entries)
{
    json_t *last = json_object(), *out = json_array(), *e, *v;
    const char *key;
    size_t i;

    if (!last || !out) {
        json_decref(last);
        json_decref(out);
        return NULL;
    }
    json_array_foreach(entries, i, e) /* oldest first: the last one wins */
    {
        const char *k = json_string_value(json_object_get(e, "key"));
        if (k)
            json_object_set(last, k, e);
    }
    json_object_foreach(last, key, v)
    {
        if (strcmp(json_string_value(json_object_get(v, "state")) ?: "", "firing") != 0)
            continue;
        json_array_append_new(
            out, json_pack("{s:s, s:s?, s:s?, s:s?, s:s?}", "key", key, "type",
                           json_string_value(json_object_get(v, "type")), "rule",
                           json_string_value(json_object_get(v, "rule")), "level",
                           json_string_value(json_object_get(v, "level")), "id",
                           json_string_value(json_object_get(v, "id"))));
    }
    json_decref(last);
    return out;
}
