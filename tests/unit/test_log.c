/*
 * Unit tests for lib/log (level names, conninfo redaction) and lib/err (names and texts).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "err.h"
#include "log.h"

static void redact(const char *in, const char *want)
{
    char out[512];
    log_redact_conninfo(in, out, sizeof(out));
    assert_string_equal(out, want);
}

static void test_redact_keyvalue(void **state)
{
    (void)state;
    redact("host=db port=5432 password=s3cret user=x", "host=db port=5432 password=***** user=x");
    redact("password='a b\\' c' dbname=t", "password='*****' dbname=t");
    redact("host=db", "host=db");
    redact("PASSWORD = hunter2", "PASSWORD = *****");
}

static void test_redact_uri(void **state)
{
    (void)state;
    redact("postgresql://u:pw@h:5432/db", "postgresql://u:*****@h:5432/db");
    redact("postgres://u@h/db?password=pw&sslmode=off", "postgres://u@h/db?password=*****&sslmode=off");
    redact("postgresql://h/db", "postgresql://h/db");
}

static void test_redact_truncates_safely(void **state)
{
    (void)state;
    char out[8];
    log_redact_conninfo("host=averylonghostname password=x", out, sizeof(out));
    assert_int_equal(strlen(out), 7);
}

static void test_levels(void **state)
{
    (void)state;
    int p;
    assert_int_equal(log_level_parse("warning", &p), 0);
    assert_int_equal(p, LOG_WARNING);
    assert_int_equal(log_level_parse("DEBUG", &p), 0);
    assert_int_equal(p, LOG_DEBUG);
    assert_int_equal(log_level_parse("loud", &p), -EINVAL);
    assert_string_equal(log_level_name(LOG_ERR), "error");
}

static void test_err_names(void **state)
{
    (void)state;
    assert_string_equal(err_name(DR_ECONFIG), "config_invalid");
    assert_string_equal(err_name(-ENOENT), "errno_enoent");
    assert_string_equal(err_str(DR_EPERM), "permission denied");
    assert_string_equal(err_name(0), "ok");
    assert_string_equal(err_name(DR_EINTERNAL), "internal_error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact_keyvalue), cmocka_unit_test(test_redact_uri),
        cmocka_unit_test(test_redact_truncates_safely), cmocka_unit_test(test_levels),
        cmocka_unit_test(test_err_names),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
