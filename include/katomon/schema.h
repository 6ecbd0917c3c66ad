/*
 * katomon/schema.h - the type of a topic: which fields its messages carry.
 *
 * A schema is a tree of static `struct km_field` arrays written by the
 * plugin that declares a topic. The bus keeps a borrowed pointer to it, so
 * it must stay valid for as long as the plugin is loaded (static const data
 * is the normal case).
 *
 * Objects are open: fields a schema does not name are accepted, so a plugin
 * may add fields without breaking consumers that know only the documented
 * ones. Set KM_F_CLOSED on an object to refuse unknown fields.
 */
#ifndef KATOMON_SCHEMA_H
#define KATOMON_SCHEMA_H

#ifdef __cplusplus
extern "C" {
#endif

/* JSON kinds a field may be declared with. */
enum km_kind {
    KM_ANY = 0, /* any JSON value */
    KM_STRING,  /* JSON string */
    KM_INTEGER, /* JSON integer */
    KM_NUMBER,  /* JSON integer or real */
    KM_BOOL,    /* true or false */
    KM_OBJECT,  /* JSON object; see km_field.fields */
    KM_ARRAY,   /* JSON array; see km_field.items */
};

/* Field flags. */
#define KM_F_REQUIRED (1u << 0) /* the key must be present */
#define KM_F_NULLABLE (1u << 1) /* JSON null is accepted in place of the kind */
#define KM_F_CLOSED   (1u << 2) /* KM_OBJECT: keys not listed in .fields are refused */

/*
 * One field of an object, or the item type of an array.
 * A list of fields ends with an entry whose name is NULL.
 */
struct km_field {
    const char *name;              /* key in the enclosing object; NULL ends a list */
    enum km_kind kind;             /* JSON kind of the value */
    unsigned flags;                /* KM_F_* */
    const struct km_field *fields; /* KM_OBJECT: its fields (NULL: any keys) */
    const struct km_field *items;  /* KM_ARRAY: one field giving every item's type
                                      (its name is ignored; NULL: any items) */
};

/* Shorthands for schema tables. */
#define KM_FIELD(n, k, fl)                                                               \
    {                                                                                    \
        (n), (k), (fl), NULL, NULL                                                       \
    }
#define KM_FIELD_OBJECT(n, fl, sub)                                                      \
    {                                                                                    \
        (n), KM_OBJECT, (fl), (sub), NULL                                                \
    }
#define KM_FIELD_ARRAY(n, fl, item)                                                      \
    {                                                                                    \
        (n), KM_ARRAY, (fl), NULL, (item)                                                \
    }
#define KM_FIELD_END                                                                     \
    {                                                                                    \
        NULL, KM_ANY, 0, NULL, NULL                                                      \
    }

#ifdef __cplusplus
}
#endif
#endif /* KATOMON_SCHEMA_H */
