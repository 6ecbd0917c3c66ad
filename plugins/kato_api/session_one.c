/*
 * session_one.c - one of KATO's sessions for the original dashboard
 * (kato_api):
 *
 *   GET /api/v1/sessions/{id}        KATO's GET /sessions/{id} body; when
 *                                    KATO does not have it (or fails), the
 *                                    session from KATO's Redis (the listing's
 *                                    fields + metadata, ttl_seconds, and
 *                                    kato_error when KATO failed); else 404
 *                                    {"detail": "Session ID not found"}
 *   GET /api/v1/sessions/{id}/stm    KATO's body; KATO's 4xx with KATO's
 *                                    error as the detail
 *
 * One prefix route serves both; the id is checked first (no '/', no
 * control byte, at most KA_MAX_ID bytes) and percent-encoded for KATO.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "kato_api.h"

/* One GET /api/v1/sessions/{id}[/stm] in flight. */
struct ka_one {
    struct km_rest_pending *p; /* the core's handle */
    int stm;                   /* /stm */
    int kato_status;           /* KATO's answer when it had none: its status */
    char kato_error[700];      /* ... and the detail */
    char id[KA_MAX_ID + 1];    /* the session id */
};

/* ---- GET /api/v1/sessions/{id}[/stm] ---- */

static void one_finish(struct ka_one *op, int status, json_t *body, const char *detail)
{
    ka.host->rest_finish(ka.ctx, op->p, status, body, detail);
    free(op);
}

static void one_not_found(struct ka_one *op)
{
    char detail[KA_MAX_ID + 40];
    snprintf(detail, sizeof detail, "Session %s not found", op->id);
    one_finish(op, 404, NULL, detail);
}

/* KATO's Redis answered GET kato:session:<id>. */
static void on_one_redis(struct redisReply *rep, const char *error, void *arg)
{
    struct ka_one *op = arg;
    struct ka_session s;
    json_t *extra = NULL, *body;
    char detail[1400];

    if (!rep) {
        if (op->kato_status == 404) {
            one_not_found(op); /* KATO said so; Redis could only have agreed */
            return;
        }
        snprintf(detail, sizeof detail, "%s; and KATO's Redis: %s", op->kato_error,
                 error);
        one_finish(op, op->kato_status == 504 ? 504 : 502, NULL, detail);
        return;
    }
    if (rep->type != REDIS_REPLY_STRING) {
        one_not_found(op);
        return;
    }
    if (ka_session_from(&s, op->id, rep->str, rep->len, &extra) < 0) {
        one_finish(op, 500, NULL, "out of memory");
        return;
    }
    body = ka_session_json(&s);
    if (body && extra)
        json_object_update(body, extra);
    if (body && op->kato_status != 404)
        json_object_set_new(body, "kato_error", json_string(op->kato_error));
    json_decref(extra);
    ka_session_clear(&s);
    one_finish(op, body ? 200 : 500, body, "out of memory");
}

/* KATO answered GET /sessions/{id}[/stm]. */
static void on_one_kato(const struct ka_kato_result *res, void *arg)
{
    struct ka_one *op = arg;
    const char *says = json_string_value(json_object_get(res->body, "detail"));
    char key[sizeof KA_SESSION_PREFIX + KA_MAX_ID];
    const char *argv[] = {"GET", key};
    const char *why;

    if (res->status == 200) {
        one_finish(op, 200, json_incref(res->body), NULL);
        return;
    }
    if (op->stm) {
        /* the original: 404 with KATO's error as the detail */
        if (res->kato_status >= 400 && res->kato_status < 500)
            one_finish(op, res->kato_status, NULL, says ? says : res->error);
        else
            one_finish(op, res->status, NULL, res->error);
        return;
    }
    op->kato_status = res->kato_status == 404 ? 404 : res->status;
    snprintf(op->kato_error, sizeof op->kato_error, "%s", res->error);
    snprintf(key, sizeof key, "%s%s", KA_SESSION_PREFIX, op->id);
    if (ka.redis && !ka.stopping &&
        ka_redis_cmd(ka.redis, on_one_redis, op, 2, argv, NULL, &why) == 0)
        return; /* not in KATO (or KATO failed): ask its Redis */
    if (op->kato_status == 404)
        one_not_found(op);
    else if (res->kato_status >= 400 && res->kato_status < 500 &&
             json_is_object(res->body))
        one_finish(op, res->kato_status, json_incref(res->body), NULL);
    else
        one_finish(op, res->status, NULL, res->error);
}

/* call->path below /api/v1/sessions/ -> id and whether /stm; NULL with
 *detail set when it names no session route. */
static const char *parse_id(const char *path, size_t *idlen, int *stm,
                            const char **detail)
{
    const char *id = path + sizeof "/api/v1/sessions/" - 1;
    const char *slash = strchr(id, '/');

    *stm = 0;
    *idlen = slash ? (size_t)(slash - id) : strlen(id);
    if (slash && (strcmp(slash, "/stm") != 0 || slash == id)) {
        *detail = "Not Found: the session routes are /api/v1/sessions/{id} and "
                  "/api/v1/sessions/{id}/stm, and a session id contains no '/'";
        return NULL;
    }
    *stm = slash != NULL;
    if (*idlen > KA_MAX_ID) {
        *detail = "Session not found: a session id is at most 256 bytes";
        return NULL;
    }
    for (size_t i = 0; i < *idlen; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f) {
            *detail = "Session not found: a session id contains no control characters";
            return NULL;
        }
    return id;
}

int ka_session_one(const struct km_rest_call *call, json_t **reply, const char **detail,
                   void *arg)
{
    char path[sizeof "/sessions//stm" + 3 * KA_MAX_ID];
    size_t idlen;
    int stm;
    const char *id = parse_id(call->path, &idlen, &stm, detail), *why;
    struct ka_one *op;

    if (!id)
        return 404;
    if (!(op = calloc(1, sizeof *op))) {
        *detail = "out of memory";
        return 503;
    }
    memcpy(op->id, id, idlen);
    op->stm = stm;
    strcpy(path, "/sessions/");
    ka_pct_encode(op->id, path + strlen(path), sizeof path - strlen(path) - 4);
    if (stm)
        strcat(path, "/stm");
    if (ka_kato_get(path, on_one_kato, op, &why) < 0) {
        free(op);
        *detail = why;
        return 502;
    }
    op->p = call->pending;
    return KM_REST_LATER;
}
