/*
 * Unit tests for lib/log (level names, conninfo redaction) and lib/err (names and texts).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

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

static void test_redact_sslpassword_and_escapes(void **state)
{
    (void)state;
    redact("host=db sslpassword=k3y sslmode=require", "host=db sslpassword=***** sslmode=require");
    redact("sslpassword='k e y' user=x", "sslpassword='*****' user=x");
    /* a bare value runs on past a backslash-escaped space (libpq takes "a b" as the password) */
    redact("password=a\\ b user=x", "password=***** user=x");
    redact("password = 'x\\'y' host=h", "password = '*****' host=h");
    redact("password=", "password=*****");
    redact("password='unterminated", "password='*****'");
    /* a dbname that is itself a conninfo (libpq expands it) is redacted inside */
    redact("dbname='host=h password=p' user=u", "dbname='host=h password=*****' user=u");
    redact("dbname=postgresql://u:pw@h/d", "dbname='postgresql://u:*****@h/d'");
    redact("dbname=trades", "dbname=trades");
}

static void test_redact_uri_forms(void **state)
{
    (void)state;
    redact("postgresql://u:p%40ss@h/db", "postgresql://u:*****@h/db");
    redact("postgresql://u:pw@h1:5432,h2:5433/db?sslmode=require",
           "postgresql://u:*****@h1:5432,h2:5433/db?sslmode=require");
    redact("postgresql://h/db?sslpassword=k&password=p", "postgresql://h/db?sslpassword=*****&password=*****");
    redact("postgresql://h/db?%70assword=p", "postgresql://h/db?%70assword=*****");
    redact("postgresql://u@h/db:x@y", "postgresql://u@h/db:x@y"); /* '@' after '/' is no user info */
    redact("postgresql://:pw@h", "postgresql://:*****@h");
}

/*
 * libpq as the reference: parsing the redacted string gives the same options as the original,
 * except that every secret that was set now reads "*****".
 */
static void check_against_libpq(const char *in)
{
    char out[1024];
    char *err = NULL;
    log_redact_conninfo(in, out, sizeof(out));
    PQconninfoOption *a = PQconninfoParse(in, &err);
    assert_non_null(a);
    PQconninfoOption *b = PQconninfoParse(out, &err);
    if (!b)
        fail_msg("libpq cannot parse the redacted '%s': %s", out, err ? err : "?");
    bool masked_any = false;
    for (PQconninfoOption *x = a, *y = b; x->keyword; x++, y++) {
        assert_string_equal(x->keyword, y->keyword);
        bool secret = strcmp(x->keyword, "password") == 0 || strcmp(x->keyword, "sslpassword") == 0;
        if (!x->val) {
            assert_null(y->val);
        } else if (secret) {
            assert_non_null(y->val);
            if (strcmp(y->val, "*****") != 0)
                fail_msg("'%s' -> '%s': %s is '%s'", in, out, x->keyword, y->val);
            masked_any = true;
        } else if (strcmp(x->keyword, "dbname") == 0 && (strchr(x->val, '=') || strstr(x->val, "://"))) {
            char inner[1024];
            log_redact_conninfo(x->val, inner, sizeof(inner));
            assert_string_equal(y->val, inner);
        } else {
            assert_non_null(y->val);
            assert_string_equal(x->val, y->val);
        }
        /* the secret's text appears nowhere in the output */
        if (secret && x->val && x->val[0] && strlen(x->val) > 2)
            assert_null(strstr(out, x->val));
    }
    assert_true(masked_any);
    PQconninfoFree(a);
    PQconninfoFree(b);
}

static void test_redact_matches_libpq(void **state)
{
    (void)state;
    check_against_libpq("host=db port=5432 password=s3cret user=x");
    check_against_libpq("password='a b\\' c' dbname=t");
    check_against_libpq("password=a\\ b\\'c user=x");
    check_against_libpq("  host = db  sslpassword = 'q\\\\w'   password=pp  ");
    check_against_libpq("postgresql://u:pw@h:5432/db?sslmode=disable&application_name=x");
    check_against_libpq("postgres://u:p%20w@h/db?password=other&sslpassword=k");
    check_against_libpq("postgresql://h/db?password=p%26q&user=u");
    check_against_libpq("dbname='host=h password=p' user=u password=top");
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
        cmocka_unit_test(test_redact_sslpassword_and_escapes), cmocka_unit_test(test_redact_uri_forms),
        cmocka_unit_test(test_redact_matches_libpq),
        cmocka_unit_test(test_redact_truncates_safely), cmocka_unit_test(test_levels),
        cmocka_unit_test(test_err_names),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
