/*
 * ctx.c - the plugin context: who a plugin is and what its configuration
 * says (see ctx.h).
 *
 * Concern: a plugin's identity (name, log prefix, descriptor), its config
 * values resolved against the descriptor's keys (and kept alive across
 * reloads, because the plugin may hold the strings), the sections of the
 * kinds it reads, and its log lines (the last error kept for GET
 * /api/v1/plugins). The verbs for these live here; the verb table
 * (host.c) points at them. What the plugin makes through the other verbs
 * is taken back by km_host_release (host.c), not here: this file calls no
 * module that a verb's owner calls back.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctx.h"
#include "log.h"

/* config_sections() answer for one kind, kept until the next reload. */
struct km_kind_list {
    char *kind;                          /* the kind asked for (owned) */
    const struct km_conf_section **secs; /* borrowed from core->cfg; owned array */
    size_t n;                            /* number of sections */
    struct km_kind_list *next;           /* ctx->kinds */
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Both NULL, or both set and equal. */
static int same_text(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

/* ---- logging ----------------------------------------------------------- */

void km_ctx_log(struct km_ctx *ctx, enum km_log_level level, const char *fmt, ...)
{
    va_list ap;

    if (level < KM_LOG_ERROR)
        level = KM_LOG_ERROR;
    if (level > KM_LOG_DEBUG)
        level = KM_LOG_DEBUG;
    /* Kept so the loader can say why init failed in GET /api/v1/plugins. */
    if (level <= KM_LOG_WARNING) {
        va_start(ap, fmt);
        vsnprintf(ctx->last_error, sizeof ctx->last_error, fmt, ap);
        va_end(ap);
    }
    va_start(ap, fmt);
    km_vlog(level, ctx->log_prefix, fmt, ap);
    va_end(ap);
}

const char *km_ctx_last_error(const struct km_ctx *ctx)
{
    return ctx ? ctx->last_error : "";
}

const char *km_ctx_log_prefix(const struct km_ctx *ctx)
{
    return ctx->log_prefix;
}

/* ---- configuration ------------------------------------------------------- */

/* Index of key in desc->config, or -1 (not a key of this plugin). */
static long find_key(const struct km_ctx *ctx, const char *key)
{
    if (!ctx->desc || !ctx->desc->config || !key)
        return -1;
    for (size_t i = 0; i < ctx->n_values; i++)
        if (strcmp(ctx->desc->config[i].name, key) == 0)
            return (long)i;
    return -1;
}

/* The value, or the default, of every declared key, from `sec`. */
static int resolve_values(struct km_ctx *ctx, const struct km_conf_section *sec,
                          char **out)
{
    for (size_t i = 0; i < ctx->n_values; i++) {
        const struct km_conf_key *k = &ctx->desc->config[i];
        const char *v = sec ? km_conf_value(sec, k->name) : NULL;
        out[i] = dup_or_null(v ? v : k->def);
        if ((v || k->def) && !out[i])
            return -1;
    }
    return 0;
}

const char *km_ctx_config_string(struct km_ctx *ctx, const char *key)
{
    long i = find_key(ctx, key);
    return i < 0 ? NULL : ctx->values[i];
}

long long km_ctx_config_int(struct km_ctx *ctx, const char *key)
{
    const char *v = km_ctx_config_string(ctx, key);
    long long n = 0;
    if (!v || km_parse_int(v, &n) < 0)
        return 0;
    return n;
}

double km_ctx_config_double(struct km_ctx *ctx, const char *key)
{
    const char *v = km_ctx_config_string(ctx, key);
    double d = 0;
    if (!v || km_parse_double(v, &d) < 0)
        return 0;
    return d;
}

int km_ctx_config_bool(struct km_ctx *ctx, const char *key)
{
    const char *v = km_ctx_config_string(ctx, key);
    int b = 0;
    if (!v || km_parse_bool(v, &b) < 0)
        return 0;
    return b;
}

static void free_kinds(struct km_ctx *ctx)
{
    while (ctx->kinds) {
        struct km_kind_list *k = ctx->kinds;
        ctx->kinds = k->next;
        free(k->kind);
        free(k->secs);
        free(k);
    }
}

/* Builds the list of `kind` sections of the current config. */
static struct km_kind_list *build_kind(struct km_ctx *ctx, const char *kind)
{
    const struct km_config *cfg = ctx->core->cfg;
    struct km_kind_list *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->kind = strdup(kind);
    if (cfg && cfg->n_sections)
        k->secs = calloc(cfg->n_sections, sizeof *k->secs);
    if (!k->kind || (cfg && cfg->n_sections && !k->secs)) {
        free(k->kind);
        free(k->secs);
        free(k);
        return NULL;
    }
    for (size_t i = 0; cfg && i < cfg->n_sections; i++)
        if (cfg->sections[i]->kind && strcmp(cfg->sections[i]->kind, kind) == 0)
            k->secs[k->n++] = cfg->sections[i];
    k->next = ctx->kinds;
    ctx->kinds = k;
    return k;
}

const struct km_conf_section *const *km_ctx_config_sections(struct km_ctx *ctx,
                                                            const char *kind, size_t *n)
{
    struct km_kind_list *k;

    if (n)
        *n = 0;
    if (!kind)
        return NULL;
    for (k = ctx->kinds; k; k = k->next)
        if (strcmp(k->kind, kind) == 0)
            break;
    if (!k && !(k = build_kind(ctx, kind)))
        return NULL;
    if (n)
        *n = k->n;
    return k->n ? (const struct km_conf_section *const *)k->secs : NULL;
}

const char *km_ctx_state_dir(struct km_ctx *ctx)
{
    return ctx->state_dir;
}

/* ---- lifecycle ------------------------------------------------------------ */

struct km_ctx *km_ctx_new(struct km_core *core, const char *name,
                          const struct km_plugin *desc, const struct km_conf_section *sec)
{
    struct km_ctx *ctx = calloc(1, sizeof *ctx);
    size_t prefix_len = strlen(name) + sizeof "plugin ";

    if (!ctx)
        return NULL;
    ctx->core = core;
    ctx->desc = desc;
    ctx->name = strdup(name);
    ctx->log_prefix = malloc(prefix_len);
    if (core->cfg && core->cfg->state_dir)
        ctx->state_dir = strdup(core->cfg->state_dir);
    for (const struct km_conf_key *k = desc->config; k && k->name; k++)
        ctx->n_values++;
    ctx->values = calloc(ctx->n_values + 1, sizeof *ctx->values);
    if (!ctx->name || !ctx->log_prefix || !ctx->values ||
        (core->cfg && core->cfg->state_dir && !ctx->state_dir) ||
        resolve_values(ctx, sec, ctx->values) < 0) {
        km_ctx_free(ctx);
        return NULL;
    }
    snprintf(ctx->log_prefix, prefix_len, "plugin %s", name);
    return ctx;
}

/* Keeps `old` alive until km_ctx_free: the plugin may hold it. */
static void retire(struct km_ctx *ctx, char *old)
{
    char **r;
    if (!old)
        return;
    r = realloc(ctx->retired, (ctx->n_retired + 1) * sizeof *r);
    if (!r)
        return; /* leaking one string beats a dangling one */
    ctx->retired = r;
    ctx->retired[ctx->n_retired++] = old;
}

void km_ctx_reconfigure(struct km_ctx *ctx, const struct km_conf_section *sec)
{
    char **fresh;

    free_kinds(ctx); /* borrowed from the old config */
    if (!sec || !ctx->desc || !(fresh = calloc(ctx->n_values + 1, sizeof *fresh)))
        return;
    if (resolve_values(ctx, sec, fresh) < 0) {
        for (size_t i = 0; i < ctx->n_values; i++)
            free(fresh[i]);
        free(fresh);
        return; /* ENOMEM: keep the old values */
    }
    /* Unchanged values keep their old pointer, so retired only grows with
       actual changes. */
    for (size_t i = 0; i < ctx->n_values; i++) {
        if (same_text(fresh[i], ctx->values[i])) {
            free(fresh[i]);
        } else {
            retire(ctx, ctx->values[i]);
            ctx->values[i] = fresh[i];
        }
    }
    free(fresh);
}

void km_ctx_forget(struct km_ctx *ctx)
{
    free_kinds(ctx);
    ctx->desc = NULL; /* about to be unmapped */
}

void km_ctx_free(struct km_ctx *ctx)
{
    if (!ctx)
        return;
    for (size_t i = 0; ctx->values && i < ctx->n_values; i++)
        free(ctx->values[i]);
    free(ctx->values);
    for (size_t i = 0; i < ctx->n_retired; i++)
        free(ctx->retired[i]);
    free(ctx->retired);
    free_kinds(ctx);
    free(ctx->state_dir);
    free(ctx->log_prefix);
    free(ctx->name);
    free(ctx);
}
