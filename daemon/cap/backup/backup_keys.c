/*
 * backup_keys: which key a backup is written with, which key reads a backup of a given key id, and
 * the rotation of the daemon's own backup key (security_breach's rotate step).
 *
 * The key ring is backup.keyring_dir (state_dir/backup-keys, 0700): one file <key id>.key per key
 * the daemon generated (64 hex digits, 0600, like a key_file), and `current`, the key id new
 * backups are written with. No `current`: they are written with the configured key (key_file or
 * key_credential). A backup is read with the first key whose id is the one its manifest names,
 * tried in this order: the writing key, the configured key, each of backup.previous_keys, the ring's
 * <id>.key. So after a rotation new backups carry the new key id and old ones stay readable with the
 * old key, without a configuration change. The WAL archive writes its new segments with the same
 * key (backups_load_writing_key) and reads each file with its key id's (backups_load_key_for_id).
 * Every function here blocks (files): pool threads only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/rand.h>

#include "atomicfile.h"
#include "bcf.h"
#include "cap/backup/backup_internal.h"
#include "err.h"

/* The ring's current key id (32 hex digits) into id: 1, 0 when there is no ring or no current,
 * or DR_EKEY with err (a current that cannot be read: fail closed, no backup under a guessed key). */
static int backup_keys_current(const ConfigBackup *cfg, char id[2 * BCF_KEY_ID_LEN + 1], char *err, size_t errlen)
{
    char path[4096], *text = NULL;
    size_t len = 0;
    if (!cfg->keyring_dir)
        return 0;
    snprintf(path, sizeof(path), "%s/current", cfg->keyring_dir);
    int r = atomicfile_read_all(path, 256, &text, &len);
    if (r == -ENOENT)
        return 0;
    if (r < 0) {
        snprintf(err, errlen, "cannot read the backup key ring's '%s': %s", path, strerror(-r));
        return DR_EKEY;
    }
    while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
        len--;
    bool ok = len == 2 * BCF_KEY_ID_LEN && strspn(text, "0123456789abcdef") >= len;
    if (ok) {
        memcpy(id, text, len);
        id[len] = '\0';
    }
    free(text);
    if (!ok) {
        snprintf(err, errlen, "the backup key ring's '%s' does not hold a key id", path);
        return DR_EKEY;
    }
    return 1;
}

/* Load path and say whether its id is want (NULL: any). 1 match, 0 not, <0 with err. */
static int backup_keys_try(const char *path, const char *want, uint8_t key[BCF_KEY_LEN], char *err, size_t errlen)
{
    uint8_t kid[BCF_KEY_ID_LEN];
    char hex[2 * BCF_KEY_ID_LEN + 1];
    int r = bcf_load_key_file(path, key, err, errlen);
    if (r < 0)
        return r;
    bcf_key_id(key, kid);
    bcf_hex(kid, sizeof(kid), hex);
    if (!want || !strcmp(hex, want))
        return 1;
    explicit_bzero(key, BCF_KEY_LEN);
    return 0;
}

int backup_load_key(const ConfigBackup *cfg, uint8_t key[BCF_KEY_LEN], char *err, size_t errlen)
{
    char id[2 * BCF_KEY_ID_LEN + 1], path[4096];
    int r = backup_keys_current(cfg, id, err, errlen);
    if (r < 0)
        return r;
    if (r == 1) {
        snprintf(path, sizeof(path), "%s/%s.key", cfg->keyring_dir, id);
        r = backup_keys_try(path, id, key, err, errlen);
        if (r == 0)
            snprintf(err, errlen, "the backup key ring's '%s' is not the key of id %s", path, id);
        return r == 1 ? 0 : DR_EKEY;
    }
    if (!cfg->key_path) { /* the loader sets it for every accepted configuration */
        snprintf(err, errlen, "no backup key: the configuration loader found no key_file or key_credential");
        return DR_EKEY;
    }
    return bcf_load_key_file(cfg->key_path, key, err, errlen);
}

int backup_load_key_for(const ConfigBackup *cfg, const char *want, uint8_t key[BCF_KEY_LEN], char *err, size_t errlen)
{
    char path[4096], why[512] = "";
    if (!want || !want[0]) /* a manifest that names no key id: the configured key, as before rings */
        return backups_load_key(cfg, key, err, errlen);
    if (backup_load_key(cfg, key, why, sizeof(why)) == 0) {
        uint8_t kid[BCF_KEY_ID_LEN];
        char hex[2 * BCF_KEY_ID_LEN + 1];
        bcf_key_id(key, kid);
        if (!strcmp(bcf_hex(kid, sizeof(kid), hex), want))
            return 0;
        explicit_bzero(key, BCF_KEY_LEN);
    }
    if (cfg->key_path && backup_keys_try(cfg->key_path, want, key, why, sizeof(why)) == 1)
        return 0;
    for (size_t i = 0; i < cfg->n_previous_keys; i++)
        if (backup_keys_try(cfg->previous_keys[i], want, key, why, sizeof(why)) == 1)
            return 0;
    if (cfg->keyring_dir) {
        snprintf(path, sizeof(path), "%s/%s.key", cfg->keyring_dir, want);
        struct stat st;
        if (stat(path, &st) == 0 && backup_keys_try(path, want, key, why, sizeof(why)) == 1)
            return 0;
    }
    snprintf(err, errlen, "no configured backup key has id %s (the key, backup.previous_keys and the key ring "
             "were tried)", want);
    return DR_EKEY;
}

int backups_load_key_for_header(const ConfigBackup *cfg, const uint8_t *head, size_t len, uint8_t key[BCF_KEY_LEN],
                                char *err, size_t errlen)
{
    char want[2 * BCF_KEY_ID_LEN + 1];
    if (!head || len < BCF_KEY_ID_OFFSET + BCF_KEY_ID_LEN || memcmp(head, BCF_MAGIC, 8) != 0)
        return backups_load_key(cfg, key, err, errlen); /* not a container: its reader says so */
    bcf_hex(head + BCF_KEY_ID_OFFSET, BCF_KEY_ID_LEN, want);
    return backup_load_key_for(cfg, want, key, err, errlen);
}

int backups_load_writing_key(const ConfigBackup *cfg, uint8_t key[BCF_KEY_LEN], char *err, size_t errlen)
{
    return backup_load_key(cfg, key, err, errlen);
}

int backups_load_key_for_id(const ConfigBackup *cfg, const char *key_id, uint8_t key[BCF_KEY_LEN], char *err,
                            size_t errlen)
{
    return backup_load_key_for(cfg, key_id, key, err, errlen);
}

int backup_keys_rotate(const ConfigBackup *cfg, char new_id[2 * BCF_KEY_ID_LEN + 1],
                       char old_id[2 * BCF_KEY_ID_LEN + 1], char *err, size_t errlen)
{
    uint8_t key[BCF_KEY_LEN], kid[BCF_KEY_ID_LEN];
    char hex[2 * BCF_KEY_LEN + 2], path[4096], cur[2 * BCF_KEY_ID_LEN + 2];
    int r;

    old_id[0] = '\0';
    if (!cfg->keyring_dir) {
        snprintf(err, errlen, "no key ring: the configuration has no state_dir");
        return DR_ECONFIG;
    }
    if (backup_load_key(cfg, key, err, errlen) == 0) {
        bcf_key_id(key, kid);
        bcf_hex(kid, sizeof(kid), old_id);
    }
    if (mkdir(cfg->keyring_dir, 0700) < 0 && errno != EEXIST) {
        r = -errno;
        snprintf(err, errlen, "cannot create the key ring '%s': %s", cfg->keyring_dir, strerror(-r));
        return r;
    }
    if (RAND_bytes(key, sizeof(key)) != 1) {
        snprintf(err, errlen, "the random generator failed");
        return DR_EKEY;
    }
    bcf_key_id(key, kid);
    bcf_hex(kid, sizeof(kid), new_id);
    bcf_hex(key, sizeof(key), hex);
    explicit_bzero(key, sizeof(key));
    size_t n = strlen(hex);
    hex[n++] = '\n';
    snprintf(path, sizeof(path), "%s/%s.key", cfg->keyring_dir, new_id);
    r = atomicfile_write(path, hex, n, 0600);
    explicit_bzero(hex, sizeof(hex));
    if (r < 0) {
        snprintf(err, errlen, "cannot write the new key '%s': %s", path, strerror(-r));
        return r;
    }
    /* the key is durable under its own name before `current` names it */
    snprintf(cur, sizeof(cur), "%s\n", new_id);
    snprintf(path, sizeof(path), "%s/current", cfg->keyring_dir);
    r = atomicfile_write(path, cur, strlen(cur), 0600);
    if (r < 0) {
        snprintf(err, errlen, "cannot write '%s': %s", path, strerror(-r));
        return r;
    }
    return 0;
}

int backup_load_key_of_file(const ConfigBackup *cfg, const char *path, uint8_t key[BCF_KEY_LEN], char *err,
                            size_t errlen)
{
    uint8_t h[48];
    char want[2 * BCF_KEY_ID_LEN + 1];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(h, 1, sizeof(h), f) : 0;
    if (f)
        fclose(f);
    /* not readable or not a container: the writing key, and the verification says what is wrong */
    if (n < sizeof(h) || memcmp(h, BCF_MAGIC, 8) != 0)
        return backup_load_key(cfg, key, err, errlen);
    bcf_hex(h + 32, BCF_KEY_ID_LEN, want);
    return backup_load_key_for(cfg, want, key, err, errlen);
}
