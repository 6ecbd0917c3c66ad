/*
 * plugcheck.h - a plugin's configuration, checked the same way by
 * start-up, SIGHUP and --check-config (used by loader.c only).
 *
 * What a plugin's descriptor says about its sections: the typed keys of
 * its [plugin NAME] (.config), the kinds of [KIND NAME] section it owns
 * (.kinds, each with its keys) and its own check (.check). And the one
 * rule across plugins: every [KIND NAME] of a kind the core does not know
 * has exactly one plugin declaring KIND.
 */
#ifndef KM_PLUGCHECK_H
#define KM_PLUGCHECK_H

#include <stddef.h>

#include "config.h"

/* The descriptor of ABI 1 before members were appended to it. */
#define KM_DESC_BASE offsetof(struct km_plugin, kinds)
/* 1 when a descriptor of `size` bytes has `member`. */
#define KM_DESC_HAS(size, member)                                                        \
    ((size) >=                                                                           \
     offsetof(struct km_plugin, member) + sizeof(((struct km_plugin *)0)->member))

/* A plugin whose descriptor was read, as the kinds check sees it. */
struct km_owner {
    const char *name;                  /* plugin NAME */
    const struct km_conf_section *sec; /* its [plugin NAME] section */
    const struct km_conf_kind *kinds;  /* kinds it declares (borrowed from its
                                          mapped object); NULL: none */
};

/*
 * Bytes of the descriptor as the plugin was built: the size of its
 * symbol, at most sizeof(struct km_plugin). A plugin built before a member
 * was appended has a smaller one, and what follows it in memory is not
 * ours to read. No size known: KM_DESC_BASE.
 */
size_t km_plugin_desc_size(const struct km_plugin *desc);
/* Its .kinds, or NULL when built before them. */
const struct km_conf_kind *km_plugin_kinds(const struct km_plugin *desc, size_t size);
/* Its .topics, or NULL when built before them (or it names none). */
const struct km_topic_def *km_plugin_topics(const struct km_plugin *desc, size_t size);
/* `collect` of a [plugin NAME] section: default true; a value that does not
   read as a bool (reported when the file was read) counts as true. */
int km_plugin_collects(const struct km_conf_section *sec);

/*
 * Everything checked about one plugin before its init (and its reload):
 * its section's keys against .config, the kinds it declares, the keys of
 * each section of those kinds, and its check; with `collect = false`, that
 * it names its topics (.topics) and that they can be declared. `desc` is the mapped
 * descriptor of `size` bytes. Reports each problem as an error; returns
 * how many.
 */
size_t km_plugin_check(const struct km_config *cfg, const struct km_conf_section *sec,
                       const struct km_plugin *desc, size_t size,
                       km_config_report_fn report, void *arg);

/*
 * Every section of a kind that is not the core's needs one plugin among
 * `owners` declaring that kind, and no kind two. `missing` names the
 * plugins whose kinds are unknown ("NAME (why), ..."; "" when none): a
 * section nobody declares may be theirs, so it is a warning then, not an
 * error. Returns the errors.
 */
size_t km_plugin_check_owners(const struct km_config *cfg, const struct km_owner *owners,
                              size_t n, const char *missing, km_config_report_fn report,
                              void *arg);

/* Appends "NAME (why)" to a `missing` list in buf. */
void km_plugin_note_missing(char *buf, size_t len, const char *name, const char *why);

#endif /* KM_PLUGCHECK_H */
