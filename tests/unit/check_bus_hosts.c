/*
 * check_bus_hosts.c - unit tests of the bus's hosts (core/bus_host.c):
 * remote publish, per-host values and rings, who gets what, the refusals.
 *
 * Leaks are checked by running this under ASan (--enable-sanitizers).
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "log.h"

static struct km_bus *bus;
static int log_lines; /* lines at warning or worse since setup */
static int owner;     /* the local publisher: any address will do */
#define OWNER ((const void *)&owner)

static void log_hook(enum km_log_level level, const char *line, void *arg)
{
    (void)line;
    (void)arg;
    if (level <= KM_LOG_WARNING)
        log_lines++;
}

static const struct km_field v_schema[] = {
    KM_FIELD("v", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD_END,
};

static struct km_topic *state_t, *event_t; /* "st" and "ev", both v_schema */

static struct km_topic *declare(const char *name, enum km_topic_kind kind, unsigned ring)
{
    struct km_topic_def def = {name, kind, v_schema, ring, NULL, NULL};
    struct km_topic *t = km_bus_declare(bus, &def, OWNER, NULL);
    ck_assert_ptr_nonnull(t);
    return t;
}

static void setup(void)
{
    bus = km_bus_new();
    ck_assert_ptr_nonnull(bus);
    ck_assert_int_eq(km_bus_set_host(bus, "alpha"), KM_OK);
    state_t = declare("st", KM_TOPIC_STATE, 0);
    event_t = declare("ev", KM_TOPIC_EVENT, 4);
    log_lines = 0;
    km_log_set_hook(log_hook, NULL);
}

static void teardown(void)
{
    km_bus_free(bus);
    bus = NULL;
    km_log_set_hook(NULL, NULL);
}

static json_t *v(long long x)
{
    return json_pack("{s:I}", "v", (json_int_t)x);
}

/* Publishes {"v": x} on t as host `host` with epoch and seq. */
static int rpub(struct km_topic *t, const char *host, int64_t epoch, uint64_t seq,
                long long x)
{
    struct km_remote r = {host, km_topic_kind(t), epoch, seq, 1000};
    return km_bus_publish_remote(t, v(x), &r);
}

/* A recorder: "HOST:TOPIC:v" per delivery. */
static char rec[32][64];
static int nrec;

static void rec_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    (void)arg;
    ck_assert_int_lt(nrec, 32);
    snprintf(rec[nrec++], sizeof rec[0], "%s:%s:%lld", km_msg_host_name(m),
             km_topic_name(t),
             (long long)json_integer_value(json_object_get(km_msg_json(m), "v")));
}

static void replay_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    (void)t;
    (void)arg;
    ck_assert_int_lt(nrec, 32);
    snprintf(rec[nrec++], sizeof rec[0], "%llu", (unsigned long long)km_msg_seq(m));
}

START_TEST(test_host_names)
{
    ck_assert_uint_eq(km_bus_host_count(bus), 1);
    ck_assert_str_eq(km_bus_host_name(bus, 0), "alpha");
    ck_assert_ptr_null(km_bus_host_name(bus, 1));
    ck_assert_ptr_null(km_bus_host_name(bus, -1));
    ck_assert_int_eq(km_bus_host_find(bus, "alpha"), 0);
    ck_assert_int_eq(km_bus_host_find(bus, "beta"), -1);
    ck_assert_int_eq(km_bus_set_host(bus, "bad name"), KM_EINVAL);
    ck_assert_int_eq(km_bus_set_host(bus, "a:b"), KM_EINVAL);
    ck_assert_int_eq(km_bus_set_host(bus, ""), KM_EINVAL);
    char long_name[KM_HOST_NAME_MAX + 2];
    memset(long_name, 'h', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    ck_assert_int_eq(km_bus_set_host(bus, long_name), KM_EINVAL);
    long_name[KM_HOST_NAME_MAX] = '\0';
    ck_assert_int_eq(km_bus_set_host(bus, long_name), KM_OK);
    ck_assert_int_eq(km_bus_set_host(bus, "Alpha-1.example_x"), KM_OK);
    ck_assert_str_eq(km_bus_host_name(bus, 0), "Alpha-1.example_x");
}
END_TEST

START_TEST(test_state_per_host)
{
    ck_assert_int_eq(km_bus_publish(state_t, v(1), OWNER), KM_OK);
    ck_assert_int_eq(rpub(state_t, "beta", 500, 0, 2), KM_OK);
    ck_assert_int_eq(rpub(state_t, "gamma", 600, 0, 3), KM_OK);
    ck_assert_int_eq(rpub(state_t, "beta", 500, 0, 4), KM_OK);
    ck_assert_uint_eq(km_bus_host_count(bus), 3);
    int b = km_bus_host_find(bus, "beta"), g = km_bus_host_find(bus, "gamma");
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(g, 2);
    /* host 0's value is untouched by remote ones */
    struct km_msg *m = km_topic_latest(state_t);
    ck_assert_int_eq(json_integer_value(json_object_get(km_msg_json(m), "v")), 1);
    ck_assert_ptr_eq(km_topic_latest_host(state_t, 0), m);
    m = km_topic_latest_host(state_t, b);
    ck_assert_int_eq(json_integer_value(json_object_get(km_msg_json(m), "v")), 4);
    ck_assert_int_eq(km_msg_host(m), b);
    ck_assert_str_eq(km_msg_host_name(m), "beta");
    ck_assert_int_eq(km_msg_epoch(m), 500);
    ck_assert_int_eq(km_msg_time_us(m), 1000);
    ck_assert_ptr_null(km_topic_latest_host(state_t, 7));
    ck_assert_int_eq(km_msg_epoch(km_topic_latest(state_t)), km_bus_epoch(bus));
    struct km_bus_host info;
    ck_assert_int_eq(km_bus_host_info(bus, b, &info), KM_OK);
    ck_assert_str_eq(info.name, "beta");
    ck_assert_uint_eq(info.messages, 2);
    ck_assert_int_eq(info.epoch, 500);
    ck_assert_int_gt(info.last_seen_mono, 0);
    ck_assert_int_eq(km_bus_host_info(bus, 3, &info), KM_EINVAL);
    ck_assert_uint_eq(km_topic_published(state_t), 4);
}
END_TEST

START_TEST(test_delivery_by_flag)
{
    /* a plain subscription gets host 0 only; KM_SUB_HOSTS gets all */
    nrec = 0;
    ck_assert_int_eq(km_bus_publish(state_t, v(1), OWNER), KM_OK);
    ck_assert_int_eq(rpub(state_t, "beta", 500, 0, 2), KM_OK);
    ck_assert_ptr_nonnull(km_bus_subscribe(bus, "st", rec_cb, NULL, NULL));
    ck_assert_int_eq(nrec, 1);
    ck_assert_str_eq(rec[0], "alpha:st:1");
    nrec = 0;
    ck_assert_ptr_nonnull(
        km_bus_subscribe_ex(bus, "st", rec_cb, NULL, NULL, KM_SUB_HOSTS));
    ck_assert_int_eq(nrec, 2); /* the initial values: host 0 first */
    ck_assert_str_eq(rec[0], "alpha:st:1");
    ck_assert_str_eq(rec[1], "beta:st:2");
    nrec = 0;
    ck_assert_ptr_nonnull(
        km_bus_subscribe_ex(bus, "*", rec_cb, NULL, NULL, KM_SUB_HOSTS));
    ck_assert_int_eq(nrec, 2);
    nrec = 0;
    ck_assert_int_eq(rpub(event_t, "beta", 500, 1, 9), KM_OK);
    ck_assert_int_eq(nrec, 1); /* "*" with hosts: nobody else wants "ev" */
    ck_assert_str_eq(rec[0], "beta:ev:9");
    nrec = 0;
    ck_assert_int_eq(rpub(state_t, "beta", 500, 0, 3), KM_OK);
    ck_assert_int_eq(nrec, 2); /* "st" with hosts, "*" with hosts; not the plain one */
    nrec = 0;
    ck_assert_int_eq(km_bus_publish(state_t, v(5), OWNER), KM_OK);
    ck_assert_int_eq(nrec, 3); /* all three */
}
END_TEST

START_TEST(test_refusals)
{
    struct km_remote r = {"beta", KM_TOPIC_STATE, 500, 0, 0};
    ck_assert_int_eq(km_bus_publish_remote(NULL, v(1), &r), KM_EINVAL);
    ck_assert_int_eq(km_bus_publish_remote(state_t, json_array(), &r), KM_EINVAL);
    r.host = "alpha"; /* our own name */
    ck_assert_int_eq(km_bus_publish_remote(state_t, v(1), &r), KM_EINVAL);
    r.host = "be ta";
    ck_assert_int_eq(km_bus_publish_remote(state_t, v(1), &r), KM_EINVAL);
    r.host = "beta";
    r.epoch = 0;
    ck_assert_int_eq(km_bus_publish_remote(state_t, v(1), &r), KM_EINVAL);
    r.epoch = 500;
    r.kind = KM_TOPIC_EVENT;
    ck_assert_int_eq(km_bus_publish_remote(state_t, v(1), &r), KM_EKIND);
    ck_assert_int_eq(rpub(event_t, "beta", 500, 0, 1), KM_EINVAL); /* seq 0 */
    ck_assert_int_eq(log_lines, 0);
    r.kind = KM_TOPIC_STATE;
    ck_assert_int_eq(km_bus_publish_remote(state_t, json_pack("{s:s}", "v", "x"), &r),
                     KM_ESCHEMA);
    ck_assert_int_eq(log_lines, 0); /* counted, not logged: the bridge logs per burst */
    ck_assert_uint_eq(km_topic_rejected(state_t), 1);
    /* nothing was accepted from beta: no host record, nothing held */
    ck_assert_uint_eq(km_bus_host_count(bus), 1);
    ck_assert_uint_eq(km_topic_published(state_t), 0);
    /* a known host's refusals count on it */
    ck_assert_int_eq(rpub(state_t, "beta", 500, 0, 1), KM_OK);
    ck_assert_int_eq(km_bus_publish_remote(state_t, json_pack("{s:s}", "v", "x"), &r),
                     KM_ESCHEMA);
    ck_assert_int_eq(rpub(state_t, "beta", 499, 0, 1), KM_ESTALE); /* older epoch */
    struct km_bus_host info;
    km_bus_host_info(bus, 1, &info);
    ck_assert_uint_eq(info.refused, 2);
    ck_assert_uint_eq(info.messages, 1);
    /* an orphaned topic takes nothing */
    km_bus_disown(bus, OWNER);
    ck_assert_int_eq(rpub(state_t, "beta", 500, 0, 1), KM_EOWNER);
}
END_TEST

START_TEST(test_max_hosts)
{
    km_bus_set_max_hosts(bus, 3);
    ck_assert_int_eq(rpub(state_t, "h1", 1, 0, 1), KM_OK);
    ck_assert_int_eq(rpub(state_t, "h2", 1, 0, 1), KM_OK);
    ck_assert_int_eq(rpub(state_t, "h3", 1, 0, 1), KM_EFULL);
    ck_assert_int_eq(rpub(state_t, "h1", 1, 0, 2), KM_OK); /* known hosts go on */
    ck_assert_uint_eq(km_bus_host_count(bus), 3);
    km_bus_set_max_hosts(bus, 0); /* clamped to 1: hosts already known stay */
    ck_assert_int_eq(rpub(event_t, "h2", 1, 1, 1), KM_OK);
    ck_assert_int_eq(rpub(event_t, "h4", 1, 1, 1), KM_EFULL);
}
END_TEST

START_TEST(test_event_seqs_and_gaps)
{
    /* joining late (first seq 7) is not a gap */
    ck_assert_int_eq(rpub(event_t, "beta", 500, 7, 70), KM_OK);
    ck_assert_int_eq(rpub(event_t, "beta", 500, 8, 80), KM_OK);
    ck_assert_int_eq(rpub(event_t, "beta", 500, 8, 80), KM_ESTALE); /* duplicate */
    ck_assert_int_eq(rpub(event_t, "beta", 500, 3, 30), KM_ESTALE); /* old */
    ck_assert_int_eq(rpub(event_t, "beta", 500, 11, 110), KM_OK);   /* 9, 10 missed */
    struct km_bus_host info;
    km_bus_host_info(bus, 1, &info);
    ck_assert_uint_eq(info.gaps, 1);
    ck_assert_uint_eq(info.missed, 2);
    ck_assert_uint_eq(info.refused, 2);
    ck_assert_uint_eq(km_topic_last_seq_host(event_t, 1), 11);
    /* ring of 4 holds 8..11 by number; 9 and 10 are holes */
    ck_assert_uint_eq(km_topic_oldest_seq_host(event_t, 1), 8);
    nrec = 0;
    ck_assert_int_eq(km_bus_replay_host(event_t, 1, 7, replay_cb, NULL), KM_EGONE);
    ck_assert_int_eq(nrec, 2);
    ck_assert_str_eq(rec[0], "8");
    ck_assert_str_eq(rec[1], "11");
    nrec = 0;
    ck_assert_int_eq(km_bus_replay_host(event_t, 1, 10, replay_cb, NULL), 1);
    ck_assert_int_eq(km_bus_replay_host(event_t, 1, 11, replay_cb, NULL), 0);
    ck_assert_int_eq(km_bus_replay_host(event_t, 1, 99, replay_cb, NULL), 0);
    ck_assert_int_eq(km_bus_replay_host(event_t, 5, 0, replay_cb, NULL), KM_EINVAL);
    ck_assert_int_eq(km_bus_replay_host(state_t, 1, 0, replay_cb, NULL), KM_EKIND);
    /* the local sequence is its own */
    ck_assert_uint_eq(km_topic_last_seq(event_t), 0);
    ck_assert_int_eq(km_bus_publish(event_t, v(1), OWNER), KM_OK);
    ck_assert_uint_eq(km_topic_last_seq_host(event_t, 0), 1);
    ck_assert_uint_eq(km_topic_last_seq_host(event_t, 1), 11);
    nrec = 0;
    ck_assert_int_eq(km_bus_replay_host(event_t, 0, 0, replay_cb, NULL), 1);
    ck_assert_str_eq(rec[0], "1");
}
END_TEST

START_TEST(test_ring_wraps_exact)
{
    /* 1..10 in a ring of 4: replay from 0 gives 7..10 and says some are gone */
    for (uint64_t s = 1; s <= 10; s++)
        ck_assert_int_eq(rpub(event_t, "beta", 500, s, (long long)s), KM_OK);
    ck_assert_uint_eq(km_topic_oldest_seq_host(event_t, 1), 7);
    nrec = 0;
    ck_assert_int_eq(km_bus_replay_host(event_t, 1, 0, replay_cb, NULL), KM_EGONE);
    ck_assert_int_eq(nrec, 4);
    ck_assert_str_eq(rec[0], "7");
    ck_assert_str_eq(rec[3], "10");
    nrec = 0;
    ck_assert_int_eq(km_bus_replay_host(event_t, 1, 6, replay_cb, NULL), 4);
    nrec = 0;
    ck_assert_int_eq(km_bus_replay_host(event_t, 1, 8, replay_cb, NULL), 2);
    ck_assert_str_eq(rec[0], "9");
    struct km_bus_host info;
    km_bus_host_info(bus, 1, &info);
    ck_assert_uint_eq(info.gaps, 0);
}
END_TEST

START_TEST(test_restart_epoch)
{
    ck_assert_int_eq(rpub(event_t, "beta", 500, 1, 1), KM_OK);
    ck_assert_int_eq(rpub(event_t, "beta", 500, 2, 2), KM_OK);
    ck_assert_int_eq(rpub(state_t, "beta", 500, 0, 2), KM_OK);
    /* beta restarts: seqs start again; the first one seen is 2, so 1 was lost */
    ck_assert_int_eq(rpub(event_t, "beta", 900, 2, 20), KM_OK);
    struct km_bus_host info;
    km_bus_host_info(bus, 1, &info);
    ck_assert_uint_eq(info.restarts, 1);
    ck_assert_int_eq(info.epoch, 900);
    ck_assert_uint_eq(info.gaps, 1);
    ck_assert_uint_eq(info.missed, 1);
    ck_assert_int_eq(km_topic_epoch_host(event_t, 1), 900);
    ck_assert_uint_eq(km_topic_last_seq_host(event_t, 1), 2);
    nrec = 0;
    ck_assert_int_eq(km_bus_replay_host(event_t, 1, 0, replay_cb, NULL), KM_EGONE);
    ck_assert_int_eq(nrec, 1); /* the old epoch's messages are gone */
    /* the old run's messages are stale now, on every topic */
    ck_assert_int_eq(rpub(event_t, "beta", 500, 3, 3), KM_ESTALE);
    ck_assert_int_eq(rpub(state_t, "beta", 500, 0, 3), KM_ESTALE);
    ck_assert_int_eq(rpub(state_t, "beta", 900, 0, 30), KM_OK);
    ck_assert_int_eq(km_topic_epoch_host(state_t, 1), 900);
}
END_TEST

START_TEST(test_forget)
{
    ck_assert_int_eq(rpub(state_t, "beta", 500, 0, 1), KM_OK);
    ck_assert_int_eq(rpub(event_t, "beta", 500, 1, 1), KM_OK);
    ck_assert_int_eq(rpub(event_t, "beta", 500, 2, 2), KM_OK);
    ck_assert_int_eq(km_bus_host_forget(bus, 0), KM_EINVAL);
    ck_assert_int_eq(km_bus_host_forget(bus, 2), KM_EINVAL);
    ck_assert_int_eq(km_bus_host_forget(bus, 1), KM_OK);
    struct km_bus_host info;
    km_bus_host_info(bus, 1, &info);
    ck_assert_int_eq(info.forgotten, 1);
    ck_assert_uint_eq(info.messages, 3); /* the record and its counters stay */
    ck_assert_ptr_null(km_topic_latest_host(state_t, 1));
    ck_assert_uint_eq(km_topic_last_seq_host(event_t, 1), 0);
    nrec = 0;
    ck_assert_int_eq(km_bus_replay_host(event_t, 1, 0, replay_cb, NULL), 0);
    ck_assert_int_eq(nrec, 0);
    /* back at seq 9 of the same run: a first sight, not a gap */
    ck_assert_int_eq(rpub(event_t, "beta", 500, 9, 9), KM_OK);
    km_bus_host_info(bus, 1, &info);
    ck_assert_int_eq(info.forgotten, 0);
    ck_assert_uint_eq(info.gaps, 0);
    ck_assert_uint_eq(km_topic_last_seq_host(event_t, 1), 9);
    ck_assert_int_eq(km_bus_host_find(bus, "beta"), 1);
}
END_TEST

/* A callback that publishes remotely from inside a delivery: deferred,
   delivered after, never re-entering. */
static int depth, max_depth;
static void nested_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    (void)t;
    (void)arg;
    depth++;
    if (depth > max_depth)
        max_depth = depth;
    if (km_msg_host(m) == 0)
        ck_assert_int_eq(rpub(event_t, "beta", 500, km_msg_seq(m), 1), KM_OK);
    depth--;
}

START_TEST(test_nested_remote_publish)
{
    ck_assert_ptr_nonnull(
        km_bus_subscribe_ex(bus, "ev", nested_cb, NULL, NULL, KM_SUB_HOSTS));
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(km_bus_publish(event_t, v(i), OWNER), KM_OK);
    ck_assert_int_eq(max_depth, 1);
    ck_assert_uint_eq(km_topic_last_seq_host(event_t, 1), 3);
    ck_assert_uint_eq(km_topic_published(event_t), 6);
}
END_TEST

static Suite *bus_hosts_suite(void)
{
    Suite *s = suite_create("bus_hosts");
    TCase *tc = tcase_create("hosts");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_host_names);
    tcase_add_test(tc, test_state_per_host);
    tcase_add_test(tc, test_delivery_by_flag);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_max_hosts);
    tcase_add_test(tc, test_event_seqs_and_gaps);
    tcase_add_test(tc, test_ring_wraps_exact);
    tcase_add_test(tc, test_restart_epoch);
    tcase_add_test(tc, test_forget);
    tcase_add_test(tc, test_nested_remote_publish);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(bus_hosts_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
