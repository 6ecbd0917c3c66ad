/*
 * schema.c - a topic's type (struct km_field trees, katomon/schema.h):
 * checks messages against it, checks the tree itself at declare time, and
 * renders it as JSON Schema for GET /api/v1/topics.
 *
 * Validation walks the schema, not the message: fields are checked in the
 * order the schema lists them (so "the first bad path" is deterministic),
 * then, for a closed object, the message's own keys in their order. Only a
 * part of the message that the schema describes is descended into, so the
 * recursion depth is bounded by the schema's (km_schema_valid caps that),
 * whatever the data looks like.
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"

/* Deepest nesting of objects/arrays a schema may describe. Declared schemas
   are checked against it; km_schema_check enforces it too so that a
   self-referencing (cyclic) table used directly cannot recurse forever. */
#define KM_SCHEMA_MAX_DEPTH 32

/* Longest path shown in an error; longer paths end in "...". */
#define KM_PATH_MAX 200

/* The path of the value being checked, e.g. "containers[2].memory". */
struct km_path {
    char buf[KM_PATH_MAX + 4]; /* text, NUL-terminated; room for "..." */
    size_t len;                /* strlen(buf) */
    bool cut;                  /* something did not fit: render with "..." */
};

/* One validation run. */
struct km_check {
    struct km_path path; /* where we are */
    char *err;           /* error text out; may be NULL */
    size_t errlen;       /* size of err */
};

/* ---- paths ------------------------------------------------------------------------ */

/* Appends one byte. Control bytes become '?': keys come from the data, and
   the error ends up in exactly one log line, so no newline may sneak in. */
static void km_path_putc(struct km_path *p, unsigned char ch)
{
    if (p->len >= KM_PATH_MAX) {
        p->cut = true;
        return;
    }
    p->buf[p->len++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    p->buf[p->len] = '\0';
}

static void km_path_puts(struct km_path *p, const char *s)
{
    while (*s)
        km_path_putc(p, (unsigned char)*s++);
}

/* Where a path was, to pop back to (its length and cut flag only: copying
   the whole path per key and per array item cost the plugins' publishes
   more than the check itself, as tests/fuzz's profiles showed). */
struct km_path_mark {
    size_t len; /* the path's length then */
    bool cut;   /* its cut flag then */
};

/* Appends ".key" (or "key" at the top level); returns the state to pop to. */
static struct km_path_mark km_path_key(struct km_path *p, const char *key)
{
    struct km_path_mark saved = {p->len, p->cut};
    if (p->len > 0)
        km_path_putc(p, '.');
    km_path_puts(p, key);
    return saved;
}

/* Appends "[i]"; returns the state to pop to. */
static struct km_path_mark km_path_index(struct km_path *p, size_t i)
{
    struct km_path_mark saved = {p->len, p->cut};
    char idx[32], *d = idx + sizeof idx; /* "[i]", written backwards */
    *--d = '\0';
    *--d = ']';
    do
        *--d = (char)('0' + i % 10);
    while ((i /= 10) > 0);
    *--d = '[';
    km_path_puts(p, d);
    return saved;
}

static void km_path_pop(struct km_path *p, const struct km_path_mark *saved)
{
    p->len = saved->len;
    p->cut = saved->cut;
    p->buf[p->len] = '\0';
}

/* ---- names of kinds --------------------------------------------------------------- */

static const char *km_kind_name(enum km_kind kind)
{
    switch (kind) {
    case KM_ANY:
        return "any";
    case KM_STRING:
        return "string";
    case KM_INTEGER:
        return "integer";
    case KM_NUMBER:
        return "number";
    case KM_BOOL:
        return "boolean";
    case KM_OBJECT:
        return "object";
    case KM_ARRAY:
        return "array";
    }
    return "unknown";
}

/* What a JSON value is, in the same words as km_kind_name (a real is a
   "number": that is what a schema author writes). */
static const char *km_json_kind_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

/* ---- validation ------------------------------------------------------------------- */

/* Writes "path: what" (just "what" at the top level) and returns -1. */
static int km_fail(struct km_check *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int km_fail(struct km_check *c, const char *fmt, ...)
{
    if (!c->err || c->errlen == 0)
        return -1;
    int n = 0;
    if (c->path.len > 0)
        n = snprintf(c->err, c->errlen, "%s%s: ", c->path.buf, c->path.cut ? "..." : "");
    if (n < 0 || (size_t)n >= c->errlen)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static const struct km_field *km_field_find(const struct km_field *fields,
                                            const char *key)
{
    for (const struct km_field *f = fields; f && f->name; f++)
        if (strcmp(f->name, key) == 0)
            return f;
    return NULL;
}

static int km_check_value(struct km_check *c, const struct km_field *f, json_t *v,
                          int depth);

static int km_check_object(struct km_check *c, const struct km_field *fields,
                           unsigned flags, json_t *obj, int depth)
{
    if (depth > KM_SCHEMA_MAX_DEPTH)
        return km_fail(c, "nested deeper than %d levels", KM_SCHEMA_MAX_DEPTH);
    for (const struct km_field *f = fields; f && f->name; f++) {
        json_t *v = json_object_get(obj, f->name);
        if (!v && !(f->flags & KM_F_REQUIRED))
            continue;
        struct km_path_mark saved = km_path_key(&c->path, f->name);
        int rc =
            v ? km_check_value(c, f, v, depth) : km_fail(c, "required field missing");
        if (rc < 0)
            return -1;
        km_path_pop(&c->path, &saved);
    }
    if (!(flags & KM_F_CLOSED))
        return 0;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (!km_field_find(fields, key)) {
            km_path_key(&c->path, key);
            return km_fail(c, "unexpected field (closed object)");
        }
    }
    return 0;
}

static int km_check_array(struct km_check *c, const struct km_field *item, json_t *arr,
                          int depth)
{
    size_t i;
    json_t *v;
    if (!item)
        return 0;
    json_array_foreach(arr, i, v)
    {
        struct km_path_mark saved = km_path_index(&c->path, i);
        if (km_check_value(c, item, v, depth) < 0)
            return -1;
        km_path_pop(&c->path, &saved);
    }
    return 0;
}

/* Checks one value against field f; the path already names it. */
static int km_check_value(struct km_check *c, const struct km_field *f, json_t *v,
                          int depth)
{
    bool ok = false;
    if (json_is_null(v) && (f->flags & KM_F_NULLABLE))
        return 0;
    switch (f->kind) {
    case KM_ANY:
        ok = true;
        break;
    case KM_STRING:
        ok = json_is_string(v);
        break;
    case KM_INTEGER:
        ok = json_is_integer(v);
        break;
    case KM_NUMBER:
        ok = json_is_number(v);
        break;
    case KM_BOOL:
        ok = json_is_boolean(v);
        break;
    case KM_OBJECT:
        if (json_is_object(v))
            return km_check_object(c, f->fields, f->flags, v, depth + 1);
        break;
    case KM_ARRAY:
        if (json_is_array(v))
            return km_check_array(c, f->items, v, depth + 1);
        break;
    default:
        return km_fail(c, "bad schema: unknown kind %d", (int)f->kind);
    }
    if (ok)
        return 0;
    return km_fail(c, "expected %s%s, got %s", km_kind_name(f->kind),
                   (f->flags & KM_F_NULLABLE) ? " or null" : "", km_json_kind_name(v));
}

int km_schema_check(const struct km_field *fields, json_t *value, char *err,
                    size_t errlen)
{
    struct km_check c = {.err = err, .errlen = errlen};
    if (err && errlen > 0)
        err[0] = '\0';
    if (!value)
        return km_fail(&c, "expected object, got nothing");
    if (!json_is_object(value))
        return km_fail(&c, "expected object, got %s", km_json_kind_name(value));
    return km_check_object(&c, fields, 0, value, 0);
}

/* ---- checking a schema ------------------------------------------------------------ */

static int km_schema_valid_depth(const struct km_field *fields, int depth);

static int km_field_valid(const struct km_field *f, int depth)
{
    if (f->kind < KM_ANY || f->kind > KM_ARRAY)
        return -1;
    if (f->kind == KM_OBJECT)
        return km_schema_valid_depth(f->fields, depth + 1);
    if (f->kind == KM_ARRAY && f->items)
        return depth + 1 > KM_SCHEMA_MAX_DEPTH ? -1 : km_field_valid(f->items, depth + 1);
    return 0;
}

static int km_schema_valid_depth(const struct km_field *fields, int depth)
{
    if (depth > KM_SCHEMA_MAX_DEPTH)
        return -1;
    for (const struct km_field *f = fields; f && f->name; f++)
        if (km_field_valid(f, depth) < 0)
            return -1;
    return 0;
}

int km_schema_valid(const struct km_field *fields)
{
    return km_schema_valid_depth(fields, 0);
}

/* ---- rendering as JSON Schema ----------------------------------------------------- */

/*
 * The subset of JSON Schema (2020-12) that km_field can express, so the
 * dashboard or any off-the-shelf validator can read it:
 *   string/integer/number/boolean/object/array -> {"type": ...}
 *   nullable -> "type": [kind, "null"];  any -> {}
 *   object   -> "properties", "required" (when some are),
 *               "additionalProperties": false when closed
 *   array    -> "items" (when given)
 */
static json_t *km_field_json(const struct km_field *f, int depth);

static json_t *km_object_json(const struct km_field *fields, unsigned flags, int depth)
{
    json_t *o = json_pack("{s:s}", "type", "object");
    json_t *props = json_object();
    json_t *req = json_array();
    int bad = !o || !props || !req;
    for (const struct km_field *f = fields; !bad && f && f->name; f++) {
        bad |= json_object_set_new(props, f->name, km_field_json(f, depth + 1));
        if (f->flags & KM_F_REQUIRED)
            bad |= json_array_append_new(req, json_string(f->name));
    }
    if (!bad && fields)
        bad |= json_object_set(o, "properties", props);
    if (!bad && json_array_size(req) > 0)
        bad |= json_object_set(o, "required", req);
    if (!bad && (flags & KM_F_CLOSED))
        bad |= json_object_set_new(o, "additionalProperties", json_false());
    json_decref(props);
    json_decref(req);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *km_field_json(const struct km_field *f, int depth)
{
    json_t *o;
    if (depth > KM_SCHEMA_MAX_DEPTH || f->kind == KM_ANY)
        return json_object();
    if (f->kind == KM_OBJECT)
        o = km_object_json(f->fields, f->flags, depth);
    else
        o = json_pack("{s:s}", "type", km_kind_name(f->kind));
    if (!o)
        return NULL;
    int bad = 0;
    if (f->kind == KM_ARRAY && f->items)
        bad |= json_object_set_new(o, "items", km_field_json(f->items, depth + 1));
    if (!bad && (f->flags & KM_F_NULLABLE))
        bad |= json_object_set_new(o, "type",
                                   json_pack("[ss]", km_kind_name(f->kind), "null"));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *km_schema_json(const struct km_field *fields)
{
    return km_object_json(fields, 0, 0);
}
