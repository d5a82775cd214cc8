/*
 * Unit tests for core/readiness: checks from several registered functions in order, the score (a
 * warning counts half, rounded), the Nagios level (the worst), an empty registry, the evidence text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/readiness.h"

static void two_pass(ReadyWriter *w, void *data)
{
    (void)data;
    readiness_add(w, "a.one", READY_PASS, "fine %d", 1);
    readiness_add(w, "a.two", READY_PASS, "fine");
}

static void one_each(ReadyWriter *w, void *data)
{
    int *level = data;
    readiness_add(w, "b.one", (ReadyLevel)*level, "it is %s", readiness_level_name((ReadyLevel)*level));
}

static void test_score_and_level(void **state)
{
    (void)state;
    Readiness *r = readiness_new();
    int level = READY_WARN;
    assert_int_equal(readiness_register(r, two_pass, NULL), 0);
    assert_int_equal(readiness_register(r, one_each, &level), 0);
    json_t *o = readiness_run(r);
    const json_t *c = json_object_get(o, "checks");
    assert_int_equal(json_array_size(c), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(c, 0), "check")), "a.one");
    assert_string_equal(json_string_value(json_object_get(json_array_get(c, 0), "evidence")), "fine 1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(c, 2), "status")), "WARN");
    assert_int_equal(json_integer_value(json_object_get(o, "score")), 83); /* 2.5 / 3 */
    assert_int_equal(json_integer_value(json_object_get(o, "nagios")), 1);
    json_decref(o);
    level = READY_FAIL;
    o = readiness_run(r);
    assert_int_equal(json_integer_value(json_object_get(o, "score")), 67);
    assert_int_equal(json_integer_value(json_object_get(o, "nagios")), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(o, "checks"), 2), "evidence")),
                        "it is FAIL");
    json_decref(o);
    level = READY_PASS;
    o = readiness_run(r);
    assert_int_equal(json_integer_value(json_object_get(o, "score")), 100);
    assert_int_equal(json_integer_value(json_object_get(o, "nagios")), 0);
    json_decref(o);
    readiness_free(r);
}

static void test_empty(void **state)
{
    (void)state;
    Readiness *r = readiness_new();
    json_t *o = readiness_run(r);
    assert_int_equal(json_array_size(json_object_get(o, "checks")), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "score")), 0);
    json_decref(o);
    assert_int_equal(readiness_register(r, NULL, NULL), -22);
    readiness_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_score_and_level),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
