/*
 * confint.h - what the parts of the config code share; the rest of the core
 * uses config.h only.
 *
 *   config.c    the core's own sections ([core], [http], [websocket] and
 *               the core's keys of [plugin NAME]): key tables, values into
 *               struct km_config, defaults, lookups
 *   confread.c  the INI reader: lines, headers, entries, continuation,
 *               duplicates, syntax; every problem reported with its line
 *   confcheck.c the typed keys of plugins' sections, did-you-mean hints,
 *               problem lists
 */
#ifndef KM_CONFINT_H
#define KM_CONFINT_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"

#define KM_NAME_MAX 63 /* NAME of [KIND NAME], KIND of a plugin's kind */
#define KM_SHOW     60 /* bytes of a bad value quoted back */
#define KM_IDENT    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
#define KM_NOFIELD  ((size_t)-1) /* key is checked, not stored in km_config */

/* What the value of a core key must be. */
enum km_vtype {
    KM_V_STRING,   /* non-empty text */
    KM_V_OPTSTR,   /* any text; empty means "none" (stored as NULL) */
    KM_V_BOOL,     /* see km_parse_bool */
    KM_V_INT,      /* integer within [min, max], stored as int */
    KM_V_DOUBLE,   /* number within [min, max] */
    KM_V_SIZE,     /* bytes within [min, max], k/K, M or G suffix allowed */
    KM_V_LOGLEVEL, /* error|warning|notice|info|debug */
    KM_V_TIERS,    /* history tiers, see km_parse_tiers */
    KM_V_DURATION, /* km_parse_duration within [min, max], stored as double */
    KM_V_HOSTNAME, /* km_host_name_valid */
    KM_V_FLEET,    /* local|aggregate, stored as int (KM_FLEET_*) */
};

/* One key of a core section. */
struct km_key {
    const char *name;   /* key; NULL ends a table (must stay the first member) */
    enum km_vtype type; /* what its value must be */
    double min, max;    /* INT/DOUBLE/SIZE/DURATION bounds, inclusive */
    int min_open;       /* 1: min itself is refused (update_interval > 0) */
    const char *unit;   /* "seconds", shown in errors; NULL: none */
    size_t offset;      /* field of struct km_config, or KM_NOFIELD */
};

/* What one kind of section accepts. */
struct km_sect_spec {
    const char *kind;          /* as written in the header (must stay first) */
    int named;                 /* 1: [KIND NAME]; 0: [KIND] */
    int open;                  /* 1: other keys are kept, checked later */
    const struct km_key *keys; /* keys checked while reading */
    const char *hint;          /* a valid header, for error messages */
};

/* A section being built: the public view plus what growing it needs. */
struct km_sect {
    struct km_conf_section pub;      /* what callers see; first, so casts work */
    struct km_conf_entry *ents;      /* == pub.entries, but writable */
    size_t cap;                      /* entries allocated */
    const struct km_sect_spec *spec; /* rules of its kind */
    char *kind;                      /* a plugin's kind: pub.kind (owned); else NULL */
};

/* The core's kinds, ended by {NULL}; and the rules of every other kind (a
   plugin's: named, any key kept for the plugin's own check). */
extern const struct km_sect_spec km_sect_specs[];
extern const struct km_sect_spec km_plugin_kind_spec;

/* confread.c: km_config_read of an open stream (borrowed; NULL: open path,
   which names the file in problems either way). For tests: fmemopen. */
int km_config_read_fp(FILE *fp, const char *path, struct km_config **out,
                      km_config_report_fn report, void *arg);

/* config.c */
const struct km_sect_spec *km_spec_find(const char *kind);
const struct km_key *km_key_find(const struct km_key *keys, const char *name);
/* Checks text against k and, when k has a field, stores it in cfg.
   Returns 0, -1 (bad value) or -2 (out of memory). */
int km_key_apply(const struct km_key *k, const char *text, struct km_config *cfg);
/* What a valid value of k looks like, after "expected ". */
const char *km_key_describe(const struct km_key *k, char *buf, size_t n);
void km_sect_free(struct km_sect *s);

/* confcheck.c: did-you-mean over tables whose entries start with a name */
const char *km_suggest(const char *word, const void *tab, size_t stride);
const char *km_list(const void *tab, size_t stride, char *buf, size_t n);
const char *km_hint(const char *word, const void *tab, size_t stride, char *buf,
                    size_t n);
/* "[kind]" or "[kind name]", for messages. */
const char *km_label(const struct km_conf_section *sec, char *buf, size_t n);
/* A value quoted back in an error: at most KM_SHOW bytes, then "...". */
int km_show_len(const char *v);
const char *km_show_more(const char *v);

#endif /* KM_CONFINT_H */
