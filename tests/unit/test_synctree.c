/*
 * Unit tests for lib/synctree: a tree of files and directories is synced with every regular file
 * and every directory counted once; a symbolic link (to a file or a directory outside the tree) is
 * not followed; an empty directory is one directory; a missing directory is -ENOENT with its path
 * in the message. The ticker runs passes while a tree grows, skips none it cannot run, and once
 * stopped (with a pass possibly in flight) leaves a loop that closes cleanly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "synctree.h"

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static void test_tree_counts_files_and_directories(void **state)
{
    (void)state;
    char root[] = "/tmp/test_synctree.XXXXXX", outside[] = "/tmp/test_synctree_out.XXXXXX";
    char p[256], q[256], err[512];
    assert_non_null(mkdtemp(root));
    assert_non_null(mkdtemp(outside));
    snprintf(p, sizeof(p), "%s/PG_VERSION", root);
    put(p, "15\n");
    snprintf(p, sizeof(p), "%s/base", root);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/base/1", root);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/base/1/1259", root);
    put(p, "page");
    snprintf(p, sizeof(p), "%s/base/1/1259_fsm", root);
    put(p, "fsm");
    snprintf(p, sizeof(p), "%s/pg_wal", root);
    assert_int_equal(mkdir(p, 0700), 0); /* empty */
    snprintf(q, sizeof(q), "%s/elsewhere", outside);
    put(q, "not ours");
    snprintf(p, sizeof(p), "%s/link-to-file", root);
    assert_int_equal(symlink(q, p), 0);
    snprintf(p, sizeof(p), "%s/link-to-dir", root);
    assert_int_equal(symlink(outside, p), 0);

    SyncTreeStats st = {0};
    assert_int_equal(synctree_sync(root, &st, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(st.files, 3);       /* PG_VERSION, 1259, 1259_fsm: not the links' targets */
    assert_int_equal(st.directories, 4); /* root, base, base/1, pg_wal */
    assert_int_equal(synctree_sync(root, NULL, err, sizeof(err)), 0);

    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", root, outside);
    assert_int_equal(system(cmd), 0);
}

static void test_missing_directory(void **state)
{
    (void)state;
    char err[512];
    SyncTreeStats st = {7, 7};
    assert_int_equal(synctree_sync("/tmp/test_synctree_missing_dir_x", &st, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "'/tmp/test_synctree_missing_dir_x'"));
    assert_int_equal(st.files, 7); /* untouched on failure */
}

static void test_ticker_passes_then_stops_cleanly(void **state)
{
    (void)state;
    char root[] = "/tmp/test_synctree_tick.XXXXXX", p[256], cmd[300];
    assert_non_null(mkdtemp(root));
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    SyncTreeTicker *t = synctree_ticker_start(&loop, root, 5);
    assert_non_null(t);
    /* The tree grows while the ticker runs, until it has made a few passes. */
    for (int i = 0; synctree_ticker_passes(t) < 3; i++) {
        assert_true(i < 100000);
        snprintf(p, sizeof(p), "%s/f%d", root, i % 50);
        put(p, "data");
        uv_run(&loop, UV_RUN_NOWAIT);
        if (synctree_ticker_passes(t) < 3)
            uv_run(&loop, UV_RUN_ONCE);
    }
    synctree_ticker_stop(t);
    synctree_ticker_stop(NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_counts_files_and_directories),
        cmocka_unit_test(test_missing_directory),
        cmocka_unit_test(test_ticker_passes_then_stops_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
