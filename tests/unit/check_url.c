/*
 * check_url.c - unit tests of the one percent-decoder (<katomon/url.h>): the
 * path rule and the query rule, a NUL refused by both, a bad escape, the
 * order of the failures, and the output bound.
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"

/* Decodes the C string s by rule into a 64-byte buffer. */
static long dec(const char *s, enum km_pct_rule rule, char out[64])
{
    return km_pct_decode(s, strlen(s), out, 64, rule);
}

START_TEST(test_path_rule)
{
    char out[64];

    ck_assert_int_eq(dec("/a%20b+c", KM_PCT_PATH, out), 6);
    ck_assert_str_eq(out, "/a b+c"); /* '+' is a plus in a path */
    ck_assert_int_eq(dec("/%2e%2E%2f", KM_PCT_PATH, out), 4);
    ck_assert_str_eq(out, "/../");
    ck_assert_int_eq(dec("%41", KM_PCT_PATH, out), 1);
    ck_assert_str_eq(out, "A");
    ck_assert_int_eq(dec("", KM_PCT_PATH, out), 0);
    ck_assert_str_eq(out, "");
    /* a '%' must start two hex digits */
    ck_assert_int_eq(dec("/%zz", KM_PCT_PATH, out), KM_PCT_EBAD);
    ck_assert_int_eq(dec("/%2", KM_PCT_PATH, out), KM_PCT_EBAD);
    ck_assert_int_eq(dec("/%", KM_PCT_PATH, out), KM_PCT_EBAD);
    ck_assert_int_eq(dec("/%4g", KM_PCT_PATH, out), KM_PCT_EBAD);
    /* n bounds the input: the escape is cut short there */
    ck_assert_int_eq(km_pct_decode("/%41", 3, out, sizeof out, KM_PCT_PATH), KM_PCT_EBAD);
}
END_TEST

START_TEST(test_query_rule)
{
    char out[64];

    ck_assert_int_eq(dec("a+b%2Bc", KM_PCT_QUERY, out), 5);
    ck_assert_str_eq(out, "a b+c"); /* '+' is a space, %2B a plus */
    /* a stray '%' stays, as browsers' form decoding keeps it */
    ck_assert_int_eq(dec("100%", KM_PCT_QUERY, out), 4);
    ck_assert_str_eq(out, "100%");
    ck_assert_int_eq(dec("%zz%4", KM_PCT_QUERY, out), 5);
    ck_assert_str_eq(out, "%zz%4");
    ck_assert_int_eq(dec("hi%20there", KM_PCT_QUERY, out), 8);
    ck_assert_str_eq(out, "hi there");
}
END_TEST

START_TEST(test_nul)
{
    char out[64];
    static const char raw[] = {'/', 'a', '\0', 'b'};

    /* both rules refuse it; out keeps what came before */
    ck_assert_int_eq(dec("/api/v1/a%00b", KM_PCT_PATH, out), KM_PCT_ENUL);
    ck_assert_str_eq(out, "/api/v1/a");
    ck_assert_int_eq(dec("x%00", KM_PCT_QUERY, out), KM_PCT_ENUL);
    ck_assert_str_eq(out, "x");
    /* a raw NUL inside n is refused too, not taken as the end */
    ck_assert_int_eq(km_pct_decode(raw, sizeof raw, out, sizeof out, KM_PCT_PATH),
                     KM_PCT_ENUL);
    ck_assert_str_eq(out, "/a");
    /* a bad escape anywhere comes first */
    ck_assert_int_eq(dec("/%00/%zz", KM_PCT_PATH, out), KM_PCT_EBAD);
}
END_TEST

START_TEST(test_overflow)
{
    char out[4];

    ck_assert_int_eq(km_pct_decode("abc", 3, out, sizeof out, KM_PCT_PATH), 3);
    ck_assert_str_eq(out, "abc");
    ck_assert_int_eq(km_pct_decode("abcd", 4, out, sizeof out, KM_PCT_PATH),
                     KM_PCT_ETOOLONG);
    ck_assert_int_eq(strlen(out), 3); /* still a C string */
    /* the decoded length counts, not the raw one */
    ck_assert_int_eq(km_pct_decode("%41%42%43", 9, out, sizeof out, KM_PCT_QUERY), 3);
    ck_assert_str_eq(out, "ABC");
    ck_assert_int_eq(km_pct_decode("a", 1, out, 0, KM_PCT_QUERY), KM_PCT_ETOOLONG);
    /* a NUL comes before an overflow */
    ck_assert_int_eq(km_pct_decode("abcd%00", 7, out, sizeof out, KM_PCT_PATH),
                     KM_PCT_ENUL);
}
END_TEST

static Suite *url_suite(void)
{
    Suite *s = suite_create("url");
    TCase *tc = tcase_create("pct_decode");

    tcase_add_test(tc, test_path_rule);
    tcase_add_test(tc, test_query_rule);
    tcase_add_test(tc, test_nul);
    tcase_add_test(tc, test_overflow);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(url_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
