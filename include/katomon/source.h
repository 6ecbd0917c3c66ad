/*
 * katomon/source.h - the "_source" member of collector messages.
 *
 * Every message a collector publishes about an outside source (KATO,
 * Docker) carries "_source": {"healthy", "error", "fetched_at",
 * "failures"}, so a consumer can tell fresh data from a failing source
 * without guessing from missing fields. Header-only: no core symbols.
 */
#ifndef KATOMON_SOURCE_H
#define KATOMON_SOURCE_H

#include <jansson.h>
#include <katomon/schema.h>
#include <katomon/util.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Initializer of the "_source" fields, for a schema table:
   static const struct km_field source_fields[] = KM_SOURCE_FIELDS; */
#define KM_SOURCE_FIELDS                                                                 \
    {                                                                                    \
        KM_FIELD("healthy", KM_BOOL, KM_F_REQUIRED),                                     \
            KM_FIELD("error", KM_STRING, KM_F_NULLABLE),                                 \
            KM_FIELD("fetched_at", KM_STRING, KM_F_REQUIRED),                            \
            KM_FIELD("failures", KM_INTEGER, 0), KM_FIELD_END,                           \
    }

/*
 * New "_source" object: healthy when error is NULL, fetched now, with the
 * count of consecutive failed fetches. Returns a new reference (NULL on ENOMEM).
 */
static inline json_t *km_source_json(const char *error, unsigned failures)
{
    char when[KM_ISO_LEN];
    return json_pack("{s:b, s:s?, s:s, s:I}", "healthy", error == NULL, "error", error,
                     "fetched_at", km_format_iso(km_wall_us(), 3, when, sizeof when),
                     "failures", (json_int_t)failures);
}

#ifdef __cplusplus
}
#endif
#endif /* KATOMON_SOURCE_H */
