/*
 * Unit tests for daemon/cap/backup/backup_restore.c, backup_restore_into without a server: what it
 * refuses at once (backups not configured, a name that is not a backup file of the directory, a
 * database name too long to quote) without a callback; a refused admin connection ends at the
 * CREATE stage with nothing to drop, on a later loop turn; a missing key file ends at the KEY
 * stage; a cancel ends with DR_ECANCELED, never inside the call; and the loop closes cleanly after
 * each. The restore itself (real pg_restore into a real server) is covered by the integration
 * tests test_backup.py, test_standby.py and test_scenario*.py.
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

#include "cap/backup/backup_internal.h"
#include "err.h"

typedef struct Seen {
    int calls;
    int started;
    BackupRestoreResult res;
    char error[512];
} Seen;

static void on_done(const BackupRestoreResult *res, void *data)
{
    Seen *s = data;
    s->calls++;
    s->res = *res;
    snprintf(s->error, sizeof(s->error), "%s", res->error);
    s->res.error = s->error;
    s->res.drop_error = "";
}

static void on_started(void *data)
{
    ((Seen *)data)->started++;
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

static char pg_restore_path[] = "/bin/false", key_path[] = "/nonexistent/drsup-test.key";

static ConfigBackup cfg_for(char *dir)
{
    ConfigBackup c = {.enabled = true, .directory = dir, .pg_restore = pg_restore_path, .key_file = key_path, .key_path = key_path};
    return c;
}

static const uint8_t key[BCF_KEY_LEN] = {1, 2, 3};

static void test_refused_at_once(void **state)
{
    (void)state;
    uv_loop_t loop;
    Seen s = {0};
    char dir[] = "/tmp";
    ConfigBackup c = cfg_for(dir);
    BackupRestore *r = NULL;
    char longname[300];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';

    assert_int_equal(uv_loop_init(&loop), 0);
    const char *admin = "host=/tmp port=1";
    assert_int_equal(backup__restore_into(&loop, &c, "../etc/passwd", NULL, key, admin, "db", NULL, on_done, &s, &r),
                     -EINVAL);
    assert_int_equal(backup__restore_into(&loop, &c, "a/b", NULL, key, admin, "db", NULL, on_done, &s, &r), -EINVAL);
    assert_int_equal(backup__restore_into(&loop, &c, ".hidden", NULL, key, admin, "db", NULL, on_done, &s, &r), -EINVAL);
    assert_int_equal(backup__restore_into(&loop, &c, "", NULL, key, admin, "db", NULL, on_done, &s, &r), -EINVAL);
    assert_int_equal(backup__restore_into(&loop, &c, "f", NULL, key, admin, "", NULL, on_done, &s, &r), -EINVAL);
    assert_int_equal(backup__restore_into(&loop, &c, "f", NULL, key, admin, longname, NULL, on_done, &s, &r), -EINVAL);
    BackupRestoreOpts bad_spool = {.jobs = 2, .spool_name = "../x.dump"};
    assert_int_equal(backup__restore_into(&loop, &c, "f", NULL, key, admin, "db", &bad_spool, on_done, &s, &r),
                     -EINVAL);
    c.enabled = false;
    assert_int_equal(backup__restore_into(&loop, &c, "f", NULL, key, admin, "db", NULL, on_done, &s, &r), DR_ECONFIG);
    assert_int_equal(backup_restore_into(NULL, "f", "00", admin, "db", NULL, on_done, &s, &r), DR_ECONFIG);
    assert_null(r);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(s.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_create_refused(void **state)
{
    (void)state;
    uv_loop_t loop;
    Seen s = {0};
    char dir[] = "/tmp", admin[128];
    ConfigBackup c = cfg_for(dir);
    BackupRestore *r = NULL;
    BackupRestoreOpts o = {.replace = true, .started = on_started};

    assert_int_equal(uv_loop_init(&loop), 0);
    snprintf(admin, sizeof(admin), "host=127.0.0.1 port=%d user=x password=hunter2", closed_port());
    assert_int_equal(backup__restore_into(&loop, &c, "f.bcf", "00", key, admin, "shop_restore_1", &o, on_done, &s, &r),
                     0);
    assert_non_null(r);
    assert_int_equal(s.calls, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.started, 0);
    assert_int_equal(s.res.status, DR_EDB);
    assert_int_equal(s.res.stage, BACKUP_RESTORE_REPLACE); /* the leftover's DROP is the first statement */
    assert_true(s.res.dropped); /* nothing was created */
    assert_null(strstr(s.error, "hunter2"));
    assert_int_equal(uv_loop_close(&loop), 0);

    /* without replace the first statement is the CREATE */
    Seen t = {0};
    o.replace = false;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(backup__restore_into(&loop, &c, "f.bcf", "00", key, admin, "shop_restore_1", &o, on_done, &t, &r),
                     0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(t.calls, 1);
    assert_int_equal(t.res.stage, BACKUP_RESTORE_CREATE);
    assert_int_equal(t.res.status, DR_EDB);
    assert_true(t.res.dropped);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_key_missing(void **state)
{
    (void)state;
    uv_loop_t loop;
    Seen s = {0};
    char dir[] = "/tmp";
    ConfigBackup c = cfg_for(dir);

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(backup__restore_into(&loop, &c, "f.bcf", "00", NULL, "host=/tmp port=1", "db", NULL, on_done, &s,
                                          NULL), 0);
    assert_int_equal(s.calls, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.res.stage, BACKUP_RESTORE_KEY);
    assert_true(s.res.status < 0);
    assert_true(s.res.dropped);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_cancel(void **state)
{
    (void)state;
    uv_loop_t loop;
    Seen s = {0};
    char dir[] = "/tmp";
    ConfigBackup c = cfg_for(dir);
    BackupRestore *r = NULL;

    assert_int_equal(uv_loop_init(&loop), 0);
    /* a host name lookup keeps the CREATE busy: cancel before it is answered */
    assert_int_equal(backup__restore_into(&loop, &c, "f.bcf", "00", key, "host=localhost port=1 connect_timeout=5",
                                          "db", NULL, on_done, &s, &r), 0);
    backup_restore_cancel(r, false);
    backup_restore_cancel(r, true); /* a second cancel is a no-op */
    assert_int_equal(s.calls, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.res.status, DR_ECANCELED);
    /* the CREATE may have happened, and drop_partial was false: not claimed dropped */
    assert_false(s.res.dropped);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_at_once),
        cmocka_unit_test(test_create_refused),
        cmocka_unit_test(test_key_missing),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests_name("backup_restore", tests, NULL, NULL);
}
