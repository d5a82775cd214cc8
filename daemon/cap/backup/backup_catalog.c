/*
 * backup_catalog: manifests, the directory scan, the failure log and key loading (see
 * backup_internal.h). The backup directory and its manifests are the source of truth; the daemon's
 * in-memory catalog is rebuilt from them at start. Everything that touches the disk here blocks and
 * runs on pool threads.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "cap/backup/backup_internal.h"
#include "err.h"

int backups_load_key(const ConfigBackup *cfg, uint8_t key[32], char *err, size_t errlen)
{
    if (!cfg->key_path) { /* the loader sets it for every accepted configuration */
        snprintf(err, errlen, "no backup key: the configuration loader found no key_file or key_credential");
        return DR_EKEY;
    }
    return bcf_load_key_file(cfg->key_path, key, err, errlen);
}

void backup_time_rfc3339(int64_t unix_s, char *out, size_t n)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(out, n, "1970-01-01T00:00:00Z");
        return;
    }
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int64_t backup_time_parse(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!s)
        return -1;
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end)
        return -1;
    return (int64_t)timegm(&tm);
}

int64_t backup_manifest_started(const json_t *m)
{
    return backup_time_parse(json_string_value(json_object_get(m, "started_at")));
}

int64_t backup_manifest_finished(const json_t *m)
{
    return backup_time_parse(json_string_value(json_object_get(m, "finished_at")));
}

int64_t backup_manifest_finished_by_ms(const json_t *m)
{
    int64_t s = backup_manifest_finished(m);
    const json_t *ms = json_object_get(m, "finished_at_ms");
    if (s < 0)
        return -1;
    if (json_is_integer(ms) && json_integer_value(ms) / 1000 == s) /* else finished_at alone is believed */
        return json_integer_value(ms) + 1;
    return (s + 1) * 1000;
}

bool backup_manifest_is_verified(const json_t *m)
{
    return backup_manifest_verified(m);
}

const char *backup_kind_name(BackupKind k)
{
    switch (k) {
    case BACKUP_KIND_LOGICAL:
        return "logical";
    case BACKUP_KIND_PHYSICAL:
        return "physical";
    default:
        return "unknown";
    }
}

BackupKind backup_manifest_kind(const json_t *m)
{
    const json_t *k = json_object_get(m, "kind");
    if (!k)
        return BACKUP_KIND_LOGICAL; /* manifests written before there were kinds */
    const char *s = json_string_value(k);
    if (s && strcmp(s, "logical") == 0)
        return BACKUP_KIND_LOGICAL;
    if (s && strcmp(s, "physical") == 0)
        return BACKUP_KIND_PHYSICAL;
    return BACKUP_KIND_UNKNOWN;
}

bool backup_manifest_verified(const json_t *m)
{
    const json_t *v = json_object_get(m, "verification");
    const char *container = json_string_value(json_object_get(v, "container"));
    bool sealed = container && strcmp(container, "ok") == 0 && json_is_true(json_object_get(v, "sha256_match"));

    switch (backup_manifest_kind(m)) {
    case BACKUP_KIND_LOGICAL: {
        const char *list = json_string_value(json_object_get(v, "pg_restore_list"));
        return sealed && list && strcmp(list, "ok") == 0;
    }
    case BACKUP_KIND_PHYSICAL: {
        /* "files" (every file against the server's backup_manifest) is absent in manifests
         * written before that check existed: those keep the container's verdict */
        const char *files = json_string_value(json_object_get(v, "files"));
        return sealed && (!json_object_get(v, "files") || (files && strcmp(files, "ok") == 0));
    }
    default:
        return false; /* a kind this version does not know: never restored from, never counted */
    }
}

void backups__verification_files(json_t *v, const BackupVerifyResult *vr)
{
    bool checked = vr && vr->tar_checked;
    json_object_set_new(v, "files", json_string(!checked ? "skipped" : vr->tar_ok ? "ok" : "failed"));
    if (checked && vr->tar_ok) {
        json_object_set_new(v, "files_verified", json_integer((json_int_t)vr->files_verified));
        json_object_set_new(v, "checksum_algorithm", json_string(vr->checksum_algorithm));
    } else {
        json_object_del(v, "files_verified");
        json_object_del(v, "checksum_algorithm");
    }
}

static bool backup_has_suffix(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int backup_cmp_started(const void *a, const void *b)
{
    int64_t x = backup_manifest_started(*(json_t *const *)a), y = backup_manifest_started(*(json_t *const *)b);
    return x < y ? -1 : x > y;
}

void backup_catalog_scan(const char *dir, const char *failures_path, BackupScan *ret)
{
    json_t **items = NULL;
    size_t n = 0, cap = 0;
    DIR *dh;
    struct dirent *de;

    ret->manifests = json_array();
    ret->failures = NULL;
    ret->error[0] = '\0';

    char *text = NULL;
    size_t len = 0;
    if (failures_path && atomicfile_read_all(failures_path, 16 * 1024 * 1024, &text, &len) == 0) {
        json_t *f = json_loadb(text, len, 0, NULL);
        if (json_is_array(f))
            ret->failures = f;
        else
            json_decref(f);
        free(text);
    }
    if (!ret->failures)
        ret->failures = json_array();

    dh = opendir(dir);
    if (!dh) {
        snprintf(ret->error, sizeof(ret->error), "cannot read backup directory '%s': %s", dir, strerror(errno));
        return;
    }
    while ((de = readdir(dh))) {
        char path[4096];
        const char *name = de->d_name;
        /* Temporaries of an interrupted write (".<name>.tmp.<pid>.<random>"): never complete. */
        if (name[0] == '.' && strstr(name, "_backup_") && strstr(name, ".tmp.")) {
            snprintf(path, sizeof(path), "%s/%s", dir, name);
            unlink(path);
            continue;
        }
        if (name[0] == '.' || !backup_has_suffix(name, BACKUP_MANIFEST_SUFFIX))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        if (atomicfile_read_all(path, 4 * 1024 * 1024, &text, &len) < 0)
            continue;
        json_t *m = json_loadb(text, len, 0, NULL);
        free(text);
        const char *file = json_string_value(json_object_get(m, "file"));
        struct stat st;
        char fpath[4096];
        if (!json_is_object(m) || !file || backup_manifest_started(m) < 0) {
            json_decref(m);
            continue;
        }
        snprintf(fpath, sizeof(fpath), "%s/%s", dir, file);
        if (stat(fpath, &st) < 0) {
            json_decref(m); /* the manifest of a deleted file: not a backup any more */
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            json_t **p = realloc(items, cap * sizeof(*items));
            if (!p) {
                json_decref(m);
                break;
            }
            items = p;
        }
        items[n++] = m;
    }
    closedir(dh);
    if (n)
        qsort(items, n, sizeof(*items), backup_cmp_started);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(ret->manifests, items[i]);
    free(items);
}

int backup_manifest_write(const char *dir, const json_t *manifest)
{
    char path[4096];
    const char *file = json_string_value(json_object_get(manifest, "file"));
    char *text;
    int r;

    if (!file)
        return -EINVAL;
    snprintf(path, sizeof(path), "%s/%s%s", dir, file, BACKUP_MANIFEST_SUFFIX);
    text = json_dumps(manifest, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!text)
        return -ENOMEM;
    size_t len = strlen(text);
    text[len] = '\0';
    char *withnl = realloc(text, len + 2);
    if (!withnl) {
        free(text);
        return -ENOMEM;
    }
    withnl[len] = '\n';
    withnl[len + 1] = '\0';
    r = atomicfile_write(path, withnl, len + 1, 0640);
    free(withnl);
    return r;
}

typedef struct BackupNames {
    char **v;
    size_t n, cap;
} BackupNames;

static int backup_names_add(BackupNames *b, const char *s)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32;
        char **p = realloc(b->v, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        b->v = p;
        b->cap = cap;
    }
    if (!(b->v[b->n] = strdup(s)))
        return -ENOMEM;
    b->n++;
    return 0;
}

static bool backup_names_has(const BackupNames *b, const char *s)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->v[i], s) == 0)
            return true;
    return false;
}

static void backup_names_free(BackupNames *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->v[i]);
    free(b->v);
}

int backup_catalog_sweep_uncommitted(const char *dir, void (*removed)(const char *path, const char *what))
{
    BackupNames named = {0}, files = {0}, manifests = {0};
    DIR *dh = opendir(dir);
    struct dirent *de;
    char path[4096];
    int count = 0;
    bool ok = true;

    if (!dh)
        return 0;
    while (ok && (de = readdir(dh))) {
        const char *name = de->d_name;
        if (name[0] == '.')
            continue;
        if (backup_has_suffix(name, BACKUP_MANIFEST_SUFFIX)) {
            ok = backup_names_add(&manifests, name) == 0;
        } else if (strstr(name, "_backup_") && backup_has_suffix(name, ".drbk")) {
            ok = backup_names_add(&files, name) == 0;
        }
    }
    closedir(dh);
    /* What every manifest names: its dump and its state set. A manifest that cannot be read or
     * parsed names nothing we can trust, but it is left alone (an operator's to look at). */
    for (size_t i = 0; ok && i < manifests.n; i++) {
        char *text = NULL;
        size_t len = 0;
        snprintf(path, sizeof(path), "%s/%s", dir, manifests.v[i]);
        if (atomicfile_read_all(path, 4 * 1024 * 1024, &text, &len) < 0) {
            ok = false; /* unsure what it names: remove nothing */
            break;
        }
        json_t *m = json_loadb(text, len, 0, NULL);
        free(text);
        const char *file = json_string_value(json_object_get(m, "file"));
        const char *state = json_string_value(json_object_get(json_object_get(m, "state_files"), "file"));
        if (!json_is_object(m) || !file) {
            json_decref(m);
            ok = false;
            break;
        }
        ok = backup_names_add(&named, file) == 0 && (!state || backup_names_add(&named, state) == 0);
        /* its dump is gone: a delete interrupted between the two unlinks */
        struct stat st;
        char fpath[4096];
        snprintf(fpath, sizeof(fpath), "%s/%s", dir, file);
        if (ok && stat(fpath, &st) < 0 && errno == ENOENT && unlink(path) == 0) {
            removed(path, "a manifest whose backup file is gone");
            count++;
        }
        json_decref(m);
    }
    for (size_t i = 0; ok && i < files.n; i++) {
        if (backup_names_has(&named, files.v[i]))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, files.v[i]);
        if (unlink(path) == 0) {
            removed(path, "a backup file no manifest names (its commit was interrupted)");
            count++;
        }
    }
    if (count)
        atomicfile_fsync_dir(dir);
    backup_names_free(&named);
    backup_names_free(&files);
    backup_names_free(&manifests);
    return count;
}
