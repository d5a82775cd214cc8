/*
 * Unit tests for lib/pgsql: identifier quoting (plain, with a '"', too long), the dbname appended
 * to a conninfo (quotes and backslashes escaped, parsed back by libpq), and statement sequences
 * without a server: a refused connect ends the sequence at statement 0 on a later loop turn, a
 * cancel ends it with DR_ECANCELED on a later turn (never inside the call), bad arguments are
 * refused without a callback, and the loop closes cleanly after each. With a server
 * (DRSUP_TEST_PG_CONNINFO) a sequence runs in order and stops at the first failing statement.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "pgsql.h"

static void test_quote_ident(void **state)
{
    char out[32];
    (void)state;
    assert_int_equal(pgsql_quote_ident("trades", out, sizeof(out)), 0);
    assert_string_equal(out, "\"trades\"");
    assert_int_equal(pgsql_quote_ident("a\"b", out, sizeof(out)), 0);
    assert_string_equal(out, "\"a\"\"b\"");
    assert_int_equal(pgsql_quote_ident("\"", out, sizeof(out)), 0);
    assert_string_equal(out, "\"\"\"\"");
    assert_int_equal(pgsql_quote_ident("Mixed Case; DROP", out, sizeof(out)), 0);
    assert_string_equal(out, "\"Mixed Case; DROP\"");
    assert_int_equal(pgsql_quote_ident("", out, sizeof(out)), 0);
    assert_string_equal(out, "\"\"");
    /* exactly fits: 4 chars + 2 quotes + NUL = 7 */
    assert_int_equal(pgsql_quote_ident("abcd", out, 7), 0);
    assert_string_equal(out, "\"abcd\"");
    /* one byte short: refused, never a truncated name that could be another database */
    assert_int_equal(pgsql_quote_ident("abcd", out, 6), -ENAMETOOLONG);
    assert_string_equal(out, "");
    /* the doubled quote counts */
    assert_int_equal(pgsql_quote_ident("ab\"", out, 6), -ENAMETOOLONG);
    assert_string_equal(out, "");
    assert_int_equal(pgsql_quote_ident("ab\"", out, 7), 0);
    assert_string_equal(out, "\"ab\"\"\"");
    assert_int_equal(pgsql_quote_ident("x", out, 2), -ENAMETOOLONG);
    assert_int_equal(pgsql_quote_ident("x", out, 0), -ENAMETOOLONG);
}

static void test_conninfo_dbname(void **state)
{
    (void)state;
    char *ci = pgsql_conninfo_dbname("host=/tmp port=5432 dbname=postgres", "it's a \\ db");
    assert_non_null(ci);
    assert_string_equal(ci, "host=/tmp port=5432 dbname=postgres dbname='it\\'s a \\\\ db'");
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(ci, &err);
    assert_non_null(opts);
    const char *db = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "dbname") == 0)
            db = o->val;
    assert_non_null(db);
    assert_string_equal(db, "it's a \\ db");
    PQconninfoFree(opts);
    free(ci);
}

typedef struct Seen {
    int calls;
    int status;
    size_t done;
    char msg[512];
    char value[64];
} Seen;

static void on_done(const PgSqlSeqResult *r, void *data)
{
    Seen *s = data;
    s->calls++;
    s->status = r->status;
    s->done = r->done;
    snprintf(s->msg, sizeof(s->msg), "%s", r->errmsg ? r->errmsg : "");
    if (r->status == 0)
        assert_null(r->errmsg);
    else
        assert_non_null(r->errmsg);
    if (r->res && PQntuples(r->res) > 0)
        snprintf(s->value, sizeof(s->value), "%s", PQgetvalue(r->res, 0, 0));
}

static int closed_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_seq_refused(void **state)
{
    (void)state;
    uv_loop_t loop;
    Seen s = {0};
    char ci[128];
    const char *stmts[] = {"CREATE DATABASE x", "DROP DATABASE x"};
    PgSqlSeq *seq = NULL;

    assert_int_equal(uv_loop_init(&loop), 0);
    snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d user=x password=hunter2 connect_timeout=3", closed_port());
    assert_int_equal(pgsql_seq_start(&loop, ci, NULL, stmts, 2, on_done, &s, &seq), 0);
    assert_non_null(seq);
    assert_int_equal(s.calls, 0); /* never from inside the call */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.status, DR_EDB);
    assert_int_equal(s.done, 0);
    assert_non_null(strstr(s.msg, "refused"));
    assert_null(strstr(s.msg, "hunter2"));
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_seq_cancel(void **state)
{
    (void)state;
    uv_loop_t loop;
    Seen s = {0};
    const char *stmts[] = {"SELECT 1"};
    PgSqlSeq *seq = NULL;

    assert_int_equal(uv_loop_init(&loop), 0);
    /* a name lookup keeps it busy long enough: cancel before anything is answered */
    assert_int_equal(pgsql_seq_start(&loop, "host=localhost port=1 connect_timeout=3", NULL, stmts, 1, on_done, &s,
                                     &seq), 0);
    pgsql_seq_cancel(seq);
    assert_int_equal(s.calls, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.status, DR_ECANCELED);
    assert_int_equal(s.done, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_seq_bad_arguments(void **state)
{
    (void)state;
    uv_loop_t loop;
    Seen s = {0};
    const char *stmts[] = {"SELECT 1"};
    PgSqlSeq *seq = NULL;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(pgsql_seq_start(&loop, "host='unterminated", NULL, stmts, 1, on_done, &s, &seq), -EINVAL);
    assert_int_equal(pgsql_seq_start(&loop, "host=/tmp", NULL, stmts, 0, on_done, &s, &seq), -EINVAL);
    assert_null(seq);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(s.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_seq_real_server(void **state)
{
    (void)state;
    const char *ci = getenv("DRSUP_TEST_PG_CONNINFO");
    if (!ci) {
        print_message("DRSUP_TEST_PG_CONNINFO not set: skipping\n");
        skip();
    }
    uv_loop_t loop;
    Seen s = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    const char *ok[] = {"CREATE TEMP TABLE t (v int)", "INSERT INTO t VALUES (41), (1)", "SELECT sum(v) FROM t"};
    assert_int_equal(pgsql_seq_start(&loop, ci, NULL, ok, 3, on_done, &s, NULL), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.status, 0);
    assert_int_equal(s.done, 3);
    assert_string_equal(s.value, "42");

    Seen f = {0};
    const char *bad[] = {"SELECT 1", "SELECT * FROM no_such_table_here", "SELECT 3"};
    assert_int_equal(pgsql_seq_start(&loop, ci, NULL, bad, 3, on_done, &f, NULL), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f.calls, 1);
    assert_int_equal(f.status, DR_EDB);
    assert_int_equal(f.done, 1);
    assert_non_null(strstr(f.msg, "no_such_table_here"));
    assert_int_equal(uv_loop_close(&loop), 0);
    print_message("pgsql-real-server: sequence ok\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quote_ident),
        cmocka_unit_test(test_conninfo_dbname),
        cmocka_unit_test(test_seq_refused),
        cmocka_unit_test(test_seq_cancel),
        cmocka_unit_test(test_seq_bad_arguments),
        cmocka_unit_test(test_seq_real_server),
    };
    return cmocka_run_group_tests_name("pgsql", tests, NULL, NULL);
}
