/*
 * point_in_time_files: the files of the cluster a point-in-time recovery builds (the workers of
 * point_in_time.c's steps, see point_in_time_internal.h): its empty data directory owned by the
 * server's user, the recovery settings and recovery.signal, the base backup's settings put back,
 * the staged WAL removed, a drill's scratch cluster removed. Blocking: thread pool only.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "clock.h"
#include "synctree.h"
#include "scenario/point_in_time_internal.h"

/* Worker: errno as the work's result, with what failed on which path. */
static int pitr_work_errno(PitrWork *w, const char *what, const char *path)
{
    int e = errno;
    snprintf(w->err, sizeof(w->err), "%s '%.500s': %s", what, path, strerror(e));
    return -e;
}

static int pitr_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* Worker: the owner of the live data directory; the new one empty, 0700 and theirs. */
int pitr__prepare_work(PitrWork *w)
{
    struct stat st;
    if (stat(w->live, &st) < 0)
        return pitr_work_errno(w, "cannot read the live data directory", w->live);
    w->uid = st.st_uid;
    w->gid = st.st_gid;
    if (nftw(w->dir, pitr_rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        return pitr_work_errno(w, "cannot remove the leftover", w->dir);
    if (mkdir(w->dir, 0700) < 0 || chown(w->dir, w->uid, w->gid) < 0)
        return pitr_work_errno(w, "cannot create for the server's user", w->dir);
    return 0;
}

/* Worker: the unpacked tree made durable at once (tar writes without fsync; one pass starting every
 * file's writeback, one fsyncing every file and directory), and the directory's own entry in its
 * parent. Before this returns 0 nothing says the restore happened: the step's commit record is
 * written after it. */
int pitr__sync_work(PitrWork *w)
{
    SyncTreeStats stats;
    uint64_t t0 = clock_mono_us();
    int r = synctree_sync(w->dir, &stats, w->err, sizeof(w->err));
    if (r < 0)
        return r;
    w->synced_files = stats.files;
    w->sync_ms = (clock_mono_us() - t0) / 1000u;
    return 0;
}

/* Worker: write a file of the recovered cluster, owned by the server's user. */
static int pitr_write_owned(PitrWork *w, const char *name, const char *text, size_t len)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s", w->dir, name);
    int r = atomicfile_write(path, text, len, 0600);
    if (r == 0 && chown(path, w->uid, w->gid) < 0)
        r = -errno;
    if (r < 0)
        snprintf(w->err, sizeof(w->err), "cannot write '%.500s': %s", path, strerror(-r));
    return r;
}

/* Worker: the recovery settings after the base backup's own postgresql.auto.conf (kept aside as
 * postgresql.auto.conf.before-pitr, so running this again writes the same file), recovery.signal,
 * and pg_wal/ (a tar of a base backup without WAL may lack it). */
int pitr__settings_work(PitrWork *w)
{
    char orig[4400], path[4400], pgwal[4400], *text = NULL, *out = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/postgresql.auto.conf", w->dir);
    snprintf(orig, sizeof(orig), "%s/postgresql.auto.conf.before-pitr", w->dir);
    snprintf(pgwal, sizeof(pgwal), "%s/pg_wal", w->dir);
    if ((mkdir(pgwal, 0700) < 0 && errno != EEXIST) || chown(pgwal, w->uid, w->gid) < 0)
        return pitr_work_errno(w, "cannot create", pgwal);
    int r = atomicfile_read_all(orig, 1u << 20, &text, &len);
    if (r == -ENOENT) {
        r = atomicfile_read_all(path, 1u << 20, &text, &len);
        if (r == -ENOENT) {
            text = strdup("");
            r = text ? 0 : -ENOMEM;
        }
        if (r == 0)
            r = pitr_write_owned(w, "postgresql.auto.conf.before-pitr", text, strlen(text));
    }
    if (r < 0) {
        if (!w->err[0])
            snprintf(w->err, sizeof(w->err), "cannot read '%.500s': %s", path, strerror(-r));
        free(text);
        return r;
    }
    /* no target (w->target ""): to the end of what restore_command finds, then promoted */
    int n = w->target[0] ? asprintf(&out, "%s\n# point-in-time recovery by drsupervisor (the original is "
                                    "postgresql.auto.conf.before-pitr)\nrestore_command = 'cp \"%s/%%f\" \"%%p\"'\n"
                                    "recovery_target_time = '%s'\nrecovery_target_action = 'promote'\n"
                                    "recovery_target_inclusive = %s\n%s",
                                    text, w->wal_dir, w->target, w->exclusive ? "off" : "on", w->extra)
                         : asprintf(&out, "%s\n# recovery to the end of the archive by drsupervisor (the original is "
                                    "postgresql.auto.conf.before-pitr)\nrestore_command = 'cp \"%s/%%f\" \"%%p\"'\n%s",
                                    text, w->wal_dir, w->extra);
    free(text);
    if (n < 0)
        return -ENOMEM;
    r = pitr_write_owned(w, "postgresql.auto.conf", out, (size_t)n);
    free(out);
    return r < 0 ? r : pitr_write_owned(w, "recovery.signal", "", 0);
}

/* Worker: the recovered cluster gets the base backup's own postgresql.auto.conf back (the recovery
 * settings are done with once it is promoted; it starts in the live one's place with the live
 * settings). Gone already (switched before a restart): nothing to do. */
int pitr__tidy_work(PitrWork *w)
{
    char orig[4400], path[4400];
    snprintf(orig, sizeof(orig), "%s/postgresql.auto.conf.before-pitr", w->dir);
    snprintf(path, sizeof(path), "%s/postgresql.auto.conf", w->dir);
    if (rename(orig, path) < 0 && errno != ENOENT)
        return pitr_work_errno(w, "cannot put back", orig);
    return 0;
}

/* Worker: the staged WAL (plaintext) removed once the recovered cluster is switched in. */
int pitr__unstage_work(PitrWork *w)
{
    if (nftw(w->wal_dir, pitr_rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        return pitr_work_errno(w, "cannot remove the staged WAL", w->wal_dir);
    return 0;
}


/* Worker: a drill's scratch cluster (stopped) and its staged WAL removed. */
int pitr__remove_work(PitrWork *w)
{
    if (nftw(w->dir, pitr_rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        return pitr_work_errno(w, "cannot remove the scratch cluster", w->dir);
    return pitr__unstage_work(w);
}
