/*
 * Unit tests for the end of complete_disaster's restore_base_backup (daemon/scenario/
 * complete_disaster_files.c, cd__marked_work): the unpacked tree is fsynced (every regular file,
 * symbolic links not followed) before the restore's marker is removed, with the count and the
 * time filled; an fsync that fails leaves the marker in place (the next attempt empties the
 * directory) and says which file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "scenario/complete_disaster_internal.h"

// WRAP: fsync
int __real_fsync(int fd);
int __wrap_fsync(int fd);
static bool fail_fsync;
static unsigned fsyncs;

int __wrap_fsync(int fd)
{
    fsyncs++;
    if (fail_fsync) {
        errno = EIO;
        return -1;
    }
    return __real_fsync(fd);
}

static char dir[256], data[300], marker[400];

static void put(const char *rel, const char *body)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/%s", data, rel);
    assert_int_equal(atomicfile_write(p, body, strlen(body), 0600), 0);
}

static int setup(void **state)
{
    (void)state;
    char p[600];
    snprintf(dir, sizeof(dir), "/tmp/drsup-cdf-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(data, sizeof(data), "%s/data", dir);
    assert_int_equal(mkdir(data, 0700), 0);
    snprintf(p, sizeof(p), "%s/base", data);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/base/1", data);
    assert_int_equal(mkdir(p, 0700), 0);
    put("PG_VERSION", "15\n");
    put("base/1/1259", "page");
    put("base/1/1259_fsm", "fsm");
    snprintf(p, sizeof(p), "%s/pg_wal", data);
    assert_int_equal(symlink("/nonexistent-wal-dir", p), 0); /* not followed, not counted */
    snprintf(marker, sizeof(marker), "%s/drsupervisor-restore-in-progress", data);
    assert_int_equal(atomicfile_write(marker, "", 0, 0600), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static CdWork *work(void)
{
    CdWork *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    snprintf(w->dir, sizeof(w->dir), "%s", data);
    return w;
}

static void test_fsync_failure_keeps_the_marker(void **state)
{
    (void)state;
    CdWork *w = work();
    fail_fsync = true;
    assert_int_equal(cd__marked_work(w), -EIO);
    fail_fsync = false;
    assert_non_null(strstr(w->err, "fsync"));
    assert_non_null(strstr(w->err, data));
    assert_int_equal(access(marker, F_OK), 0); /* the directory still says: unfinished restore */
    assert_int_equal(w->synced_files, 0);
    free(w);
}

static void test_tree_synced_then_unmarked(void **state)
{
    (void)state;
    CdWork *w = work();
    fsyncs = 0;
    assert_int_equal(cd__marked_work(w), 0);
    /* the three files and the marker (synced before it was removed); the link is not a file */
    assert_int_equal(w->synced_files, 4);
    /* 4 files, 3 directories, the parent's entry, the data directory after the unlink */
    assert_true(fsyncs >= 9);
    assert_int_equal(access(marker, F_OK), -1);
    char p[600];
    snprintf(p, sizeof(p), "%s/base/1/1259", data);
    assert_int_equal(access(p, F_OK), 0);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fsync_failure_keeps_the_marker),
        cmocka_unit_test(test_tree_synced_then_unmarked),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
