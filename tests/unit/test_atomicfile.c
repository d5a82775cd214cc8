/*
 * Unit tests for lib/atomicfile: write/replace/read, exact modes, streaming commit and abort,
 * failure paths (missing directory, parent not a directory, target is a directory, disk full,
 * fsync failure) leaving no temporary and the old content intact, short writes and EINTR, and
 * that both the file and its directory are really fsynced.
 */
// WRAP: write fsync
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"

ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __wrap_write(int fd, const void *buf, size_t n);
int __real_fsync(int fd);
int __wrap_fsync(int fd);

static int fail_write_errno;   /* when set, write fails with this errno */
static size_t write_chunk_max; /* when set, writes at most this many bytes (short writes) */
static bool write_eintr;       /* when set, every other write fails with EINTR */
static int write_calls;
static int fail_fsync_errno;
static int fsync_file_calls;
static int fsync_dir_calls;

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    write_calls++;
    if (fail_write_errno) {
        errno = fail_write_errno;
        return -1;
    }
    if (write_eintr && (write_calls % 2) == 1) {
        errno = EINTR;
        return -1;
    }
    if (write_chunk_max && n > write_chunk_max)
        n = write_chunk_max;
    return __real_write(fd, buf, n);
}

int __wrap_fsync(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
        fsync_dir_calls++;
    else
        fsync_file_calls++;
    if (fail_fsync_errno) {
        errno = fail_fsync_errno;
        return -1;
    }
    return __real_fsync(fd);
}

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/test_atomicfile.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    fail_write_errno = 0;
    write_chunk_max = 0;
    write_eintr = false;
    write_calls = 0;
    fail_fsync_errno = 0;
    fsync_file_calls = 0;
    fsync_dir_calls = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *path_in(const char *name)
{
    static char buf[4][256];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}

/* Number of entries in the test directory whose name contains ".tmp." */
static int count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp."))
            n++;
    closedir(d);
    return n;
}

static void assert_content(const char *path, const char *want)
{
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(atomicfile_read_all(path, 1 << 20, &data, &len), 0);
    assert_int_equal(len, strlen(want));
    assert_string_equal(data, want);
    free(data);
}

static void test_write_replace_read(void **state)
{
    (void)state;
    const char *p = path_in("state.json");
    assert_int_equal(atomicfile_write(p, "{\"a\":1}", 7, 0600), 0);
    assert_content(p, "{\"a\":1}");
    assert_int_equal(atomicfile_write(p, "{\"a\":22}", 8, 0600), 0);
    assert_content(p, "{\"a\":22}");
    assert_int_equal(atomicfile_write(p, "", 0, 0600), 0);
    assert_content(p, "");
    assert_int_equal(count_temps(tmpdir), 0);

    /* A relative name writes in the current directory. */
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(tmpdir), 0);
    assert_int_equal(atomicfile_write("rel.txt", "r", 1, 0600), 0);
    assert_int_equal(chdir(cwd), 0);
    assert_content(path_in("rel.txt"), "r");

    /* A big payload survives intact. */
    size_t big = 3u << 20;
    char *buf = malloc(big);
    assert_non_null(buf);
    for (size_t i = 0; i < big; i++)
        buf[i] = (char)('a' + i % 26);
    assert_int_equal(atomicfile_write(p, buf, big, 0600), 0);
    char *data;
    size_t len;
    assert_int_equal(atomicfile_read_all(p, big, &data, &len), 0);
    assert_int_equal(len, big);
    assert_memory_equal(data, buf, big);
    free(data);
    free(buf);
}

static void test_mode_honoured(void **state)
{
    (void)state;
    mode_t old = umask(077);
    const char *p = path_in("m");
    struct stat st;
    assert_int_equal(atomicfile_write(p, "x", 1, 0644), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644); /* not narrowed by the umask */
    assert_int_equal(atomicfile_write(p, "x", 1, 0600), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600); /* replacing changes the mode too */
    umask(old);
}

static void test_stream_commit(void **state)
{
    (void)state;
    const char *p = path_in("backup.bin");
    int err = 1;
    AtomicFile *af = atomicfile_open(p, 0640, &err);
    assert_non_null(af);
    /* The temporary lives in the same directory and is named .<name>.tmp.<pid>.<random> */
    char prefix[300];
    snprintf(prefix, sizeof(prefix), "%s/.backup.bin.tmp.%ld.", tmpdir, (long)getpid());
    const char *tp = atomicfile_temp_path(af);
    assert_true(strncmp(tp, prefix, strlen(prefix)) == 0);
    assert_true(strlen(tp) > strlen(prefix));
    assert_int_equal(access(tp, F_OK), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(atomicfile_append(af, "0123456789", 10), 0);
    assert_int_equal(access(p, F_OK), -1); /* not under its final name before commit */
    assert_int_equal(atomicfile_commit(af), 0);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 1000);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(count_temps(tmpdir), 0);
}

static void test_stream_abort(void **state)
{
    (void)state;
    const char *p = path_in("keep");
    assert_int_equal(atomicfile_write(p, "old", 3, 0600), 0);
    AtomicFile *af = atomicfile_open(p, 0600, NULL);
    assert_non_null(af);
    assert_int_equal(atomicfile_append(af, "new content", 11), 0);
    assert_int_equal(count_temps(tmpdir), 1);
    atomicfile_abort(af);
    atomicfile_abort(NULL);
    assert_int_equal(count_temps(tmpdir), 0);
    assert_content(p, "old");
}

static void test_missing_dir_and_not_a_dir(void **state)
{
    (void)state;
    assert_int_equal(atomicfile_write(path_in("nodir/x"), "a", 1, 0600), -ENOENT);
    int err = 0;
    assert_null(atomicfile_open(path_in("nodir/x"), 0600, &err));
    assert_int_equal(err, -ENOENT);

    const char *file = path_in("plainfile");
    assert_int_equal(atomicfile_write(file, "a", 1, 0600), 0);
    char under[300];
    snprintf(under, sizeof(under), "%s/x", file);
    assert_int_equal(atomicfile_write(under, "a", 1, 0600), -ENOTDIR);
    assert_int_equal(atomicfile_fsync_dir(file), -ENOTDIR);
    assert_int_equal(atomicfile_fsync_dir(path_in("nodir")), -ENOENT);
    assert_int_equal(atomicfile_fsync_dir(tmpdir), 0);

    /* /proc does not allow creating files, even for root. */
    assert_true(atomicfile_write("/proc/drsup-test-file", "a", 1, 0600) < 0);
    assert_int_equal(access("/proc/drsup-test-file", F_OK), -1);

    /* A directory or empty name is not a file name. */
    assert_int_equal(atomicfile_write(path_in(""), "a", 1, 0600), -EISDIR);
    assert_int_equal(atomicfile_write(path_in(".."), "a", 1, 0600), -EISDIR);
    assert_int_equal(atomicfile_write("", "a", 1, 0600), -EINVAL);
    assert_int_equal(count_temps(tmpdir), 0);
}

static void test_rename_onto_directory_fails_cleanly(void **state)
{
    (void)state;
    const char *d = path_in("adir");
    assert_int_equal(mkdir(d, 0700), 0);
    char inner[300];
    snprintf(inner, sizeof(inner), "%s/f", d);
    assert_int_equal(atomicfile_write(inner, "x", 1, 0600), 0);
    assert_int_equal(atomicfile_write(d, "a", 1, 0600), -EISDIR);
    assert_int_equal(count_temps(tmpdir), 0);
    assert_content(inner, "x");
}

static void test_disk_full(void **state)
{
    (void)state;
    const char *p = path_in("full");
    assert_int_equal(atomicfile_write(p, "old content", 11, 0600), 0);
    fail_write_errno = ENOSPC;
    assert_int_equal(atomicfile_write(p, "new content", 11, 0600), -ENOSPC);
    assert_int_equal(count_temps(tmpdir), 0);
    assert_content(p, "old content");

    /* Streaming: the append fails, commit reports the same error and cleans up. */
    fail_write_errno = 0;
    AtomicFile *af = atomicfile_open(p, 0600, NULL);
    assert_non_null(af);
    assert_int_equal(atomicfile_append(af, "part one", 8), 0);
    fail_write_errno = ENOSPC;
    assert_int_equal(atomicfile_append(af, "part two", 8), -ENOSPC);
    fail_write_errno = 0;
    assert_int_equal(atomicfile_append(af, "part three", 10), -ENOSPC); /* sticky */
    assert_int_equal(atomicfile_commit(af), -ENOSPC);
    assert_int_equal(count_temps(tmpdir), 0);
    assert_content(p, "old content");
}

static void test_fsync_failure(void **state)
{
    (void)state;
    const char *p = path_in("fs");
    assert_int_equal(atomicfile_write(p, "old", 3, 0600), 0);
    fail_fsync_errno = EIO;
    fsync_file_calls = 0;
    assert_int_equal(atomicfile_write(p, "new", 3, 0600), -EIO);
    assert_int_equal(fsync_file_calls, 1);
    assert_int_equal(count_temps(tmpdir), 0);
    assert_content(p, "old");
}

static void test_short_writes_and_eintr(void **state)
{
    (void)state;
    const char *p = path_in("short");
    write_chunk_max = 3;
    write_eintr = true;
    const char *msg = "a message longer than three bytes";
    assert_int_equal(atomicfile_write(p, msg, strlen(msg), 0600), 0);
    assert_true(write_calls >= (int)(2 * (strlen(msg) / 3))); /* many partial writes, half EINTR */
    write_chunk_max = 0;
    write_eintr = false;
    assert_content(p, msg);
}

static void test_fsync_really_called(void **state)
{
    (void)state;
    assert_int_equal(atomicfile_write(path_in("d"), "x", 1, 0600), 0);
    assert_int_equal(fsync_file_calls, 1);
    assert_int_equal(fsync_dir_calls, 1);

    AtomicFile *af = atomicfile_open(path_in("e"), 0600, NULL);
    assert_non_null(af);
    assert_int_equal(atomicfile_append(af, "y", 1), 0);
    assert_int_equal(fsync_file_calls, 1); /* nothing fsynced before commit */
    assert_int_equal(atomicfile_commit(af), 0);
    assert_int_equal(fsync_file_calls, 2);
    assert_int_equal(fsync_dir_calls, 2);

    assert_int_equal(atomicfile_fsync_dir(tmpdir), 0);
    assert_int_equal(fsync_dir_calls, 3);
}

static void test_read_all(void **state)
{
    (void)state;
    const char *p = path_in("r");
    assert_int_equal(atomicfile_write(p, "0123456789", 10, 0600), 0);
    char sentinel[] = "untouched";
    char *data = sentinel;
    size_t len = 77;
    assert_int_equal(atomicfile_read_all(p, 9, &data, &len), -EFBIG);
    assert_string_equal(data, "untouched");
    assert_int_equal(len, 77);
    assert_int_equal(atomicfile_read_all(p, 10, &data, &len), 0);
    assert_int_equal(len, 10);
    assert_string_equal(data, "0123456789");
    free(data);
    assert_int_equal(atomicfile_read_all(path_in("missing"), 10, &data, &len), -ENOENT);
    assert_int_equal(atomicfile_read_all(tmpdir, 10, &data, &len), -EISDIR);

    /* /proc files report size 0: read until EOF, and enforce max while streaming. */
    assert_int_equal(atomicfile_read_all("/proc/self/status", 1 << 20, &data, &len), 0);
    assert_true(len > 100);
    assert_non_null(strstr(data, "Pid:"));
    free(data);
    assert_int_equal(atomicfile_read_all("/proc/self/status", 16, &data, &len), -EFBIG);
}

static void count_removed(const char *path, long long size, void *data)
{
    (void)path;
    (void)size;
    (*(int *)data)++;
}

/* What a crash leaves (an open temporary, never committed) is recognised and removed; nothing else. */
static void test_remove_temporaries(void **state)
{
    (void)state;
    char path[256];
    int err = 0, calls = 0;
    assert_true(atomicfile_is_temporary(".state.json.tmp.123.0123456789abcdef"));
    assert_false(atomicfile_is_temporary("state.json"));
    assert_false(atomicfile_is_temporary(".state.json.tmp.123.0123456789abcdeg"));
    assert_false(atomicfile_is_temporary(".state.json.tmp..0123456789abcdef"));
    assert_false(atomicfile_is_temporary("..tmp.1.0123456789abcdef"));
    assert_false(atomicfile_is_temporary(".restore-x.dump"));

    snprintf(path, sizeof(path), "%s/state.json", tmpdir);
    assert_int_equal(atomicfile_write(path, "{}\n", 3, 0600), 0);
    AtomicFile *af = atomicfile_open(path, 0600, &err); /* the crash: open, never committed */
    assert_non_null(af);
    assert_int_equal(atomicfile_append(af, "partial", 7), 0);
    snprintf(path, sizeof(path), "%s/.keep.me", tmpdir);
    assert_int_equal(atomicfile_write(path, "x", 1, 0600), 0);

    assert_int_equal(atomicfile_remove_temporaries(tmpdir, count_removed, &calls), 1);
    assert_int_equal(calls, 1);
    DIR *dh = opendir(tmpdir);
    struct dirent *de;
    int left = 0;
    while ((de = readdir(dh)))
        if (de->d_name[0] != '.' || strcmp(de->d_name, ".keep.me") == 0)
            left++;
        else if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            fail_msg("left behind: %s", de->d_name);
    closedir(dh);
    assert_int_equal(left, 2);
    atomicfile_abort(af); /* its temporary is gone already: abort copes */
    assert_int_equal(atomicfile_remove_temporaries("/nonexistent-dir", NULL, NULL), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_replace_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mode_honoured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_dir_and_not_a_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_onto_directory_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_writes_and_eintr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync_really_called, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_temporaries, setup, teardown),
    };
    return cmocka_run_group_tests_name("atomicfile", tests, NULL, NULL);
}
