/*
 * Unit tests for cap/backup/backup_keys: the key of a key id found among the configured key,
 * backup.previous_keys and the key ring; the writing key (the ring's current, else the configured
 * key); a rotation (a new 0600 key made current, the old one still found by its id); an unknown id
 * and a damaged `current` refused (fail closed); a file read by the key id in its header.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bcf.h"
#include "cap/backup/backup_internal.h"
#include "err.h"

typedef struct Fx {
    char dir[64];
    char path_a[128], path_b[128], ring[128];
    char id_a[33], id_b[33];
    char *prev[2];
    ConfigBackup cfg;
} Fx;

static void write_key(const char *path, uint8_t fill, char id[33])
{
    uint8_t key[BCF_KEY_LEN], kid[BCF_KEY_ID_LEN];
    char hex[65];
    memset(key, fill, sizeof(key));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", bcf_hex(key, sizeof(key), hex));
    fclose(f);
    chmod(path, 0600);
    bcf_key_id(key, kid);
    bcf_hex(kid, sizeof(kid), id);
}

static int setup(void **state)
{
    Fx *fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/test_backup_keys.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->path_a, sizeof(fx->path_a), "%s/a.key", fx->dir);
    snprintf(fx->path_b, sizeof(fx->path_b), "%s/b.key", fx->dir);
    snprintf(fx->ring, sizeof(fx->ring), "%s/ring", fx->dir);
    write_key(fx->path_a, 0xaa, fx->id_a);
    write_key(fx->path_b, 0xbb, fx->id_b);
    fx->prev[0] = fx->path_b;
    fx->cfg.key_path = fx->path_a;
    fx->cfg.previous_keys = fx->prev;
    fx->cfg.n_previous_keys = 1;
    fx->cfg.keyring_dir = fx->ring;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    Fx *fx = *state;
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx);
    return 0;
}

static void key_id_of(const uint8_t key[BCF_KEY_LEN], char id[33])
{
    uint8_t kid[BCF_KEY_ID_LEN];
    bcf_key_id(key, kid);
    bcf_hex(kid, sizeof(kid), id);
}

static void test_lookup_by_id(void **state)
{
    Fx *fx = *state;
    uint8_t key[BCF_KEY_LEN];
    char err[512], id[33];
    assert_int_equal(backup_load_key_for(&fx->cfg, fx->id_a, key, err, sizeof(err)), 0);
    key_id_of(key, id);
    assert_string_equal(id, fx->id_a);
    assert_int_equal(backup_load_key_for(&fx->cfg, fx->id_b, key, err, sizeof(err)), 0); /* previous_keys */
    key_id_of(key, id);
    assert_string_equal(id, fx->id_b);
    assert_int_equal(backup_load_key_for(&fx->cfg, "00000000000000000000000000000000", key, err, sizeof(err)),
                     DR_EKEY);
    assert_non_null(strstr(err, "no configured backup key has id 00000000000000000000000000000000"));
    /* no id: the configured key, as before there were rings */
    assert_int_equal(backup_load_key_for(&fx->cfg, NULL, key, err, sizeof(err)), 0);
    key_id_of(key, id);
    assert_string_equal(id, fx->id_a);
    /* without previous_keys, b is not found */
    fx->cfg.n_previous_keys = 0;
    assert_int_equal(backup_load_key_for(&fx->cfg, fx->id_b, key, err, sizeof(err)), DR_EKEY);
}

static void test_rotation(void **state)
{
    Fx *fx = *state;
    uint8_t key[BCF_KEY_LEN];
    char err[512], id[33], new_id[33], old_id[33], path[256];
    struct stat st;

    assert_int_equal(backup_load_key(&fx->cfg, key, err, sizeof(err)), 0); /* no ring yet: the configured key */
    key_id_of(key, id);
    assert_string_equal(id, fx->id_a);
    assert_int_equal(backup_keys_rotate(&fx->cfg, new_id, old_id, err, sizeof(err)), 0);
    assert_string_equal(old_id, fx->id_a);
    assert_string_not_equal(new_id, fx->id_a);
    snprintf(path, sizeof(path), "%s/%s.key", fx->ring, new_id);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* new backups: the new key; the old one still found by its id */
    assert_int_equal(backup_load_key(&fx->cfg, key, err, sizeof(err)), 0);
    key_id_of(key, id);
    assert_string_equal(id, new_id);
    assert_int_equal(backup_load_key_for(&fx->cfg, fx->id_a, key, err, sizeof(err)), 0);
    key_id_of(key, id);
    assert_string_equal(id, fx->id_a);
    /* a second rotation: the first ring key stays readable from the ring */
    char second[33], prev[33];
    assert_int_equal(backup_keys_rotate(&fx->cfg, second, prev, err, sizeof(err)), 0);
    assert_string_equal(prev, new_id);
    assert_int_equal(backup_load_key_for(&fx->cfg, new_id, key, err, sizeof(err)), 0);
    key_id_of(key, id);
    assert_string_equal(id, new_id);
    /* a damaged `current` is refused, never replaced by a guess */
    snprintf(path, sizeof(path), "%s/current", fx->ring);
    FILE *f = fopen(path, "w");
    fputs("not-a-key-id\n", f);
    fclose(f);
    assert_int_equal(backup_load_key(&fx->cfg, key, err, sizeof(err)), DR_EKEY);
    assert_non_null(strstr(err, "does not hold a key id"));
}

static void test_key_of_file(void **state)
{
    Fx *fx = *state;
    uint8_t key[BCF_KEY_LEN], hdr[112] = {0}, kb[BCF_KEY_LEN];
    char err[512], id[33], path[256];
    /* a header naming b's key id (only the magic and the key id are read) */
    memcpy(hdr, BCF_MAGIC, 8);
    memset(kb, 0xbb, sizeof(kb));
    bcf_key_id(kb, hdr + 32);
    snprintf(path, sizeof(path), "%s/x.drbk", fx->dir);
    FILE *f = fopen(path, "wb");
    fwrite(hdr, 1, sizeof(hdr), f);
    fclose(f);
    assert_int_equal(backup_load_key_of_file(&fx->cfg, path, key, err, sizeof(err)), 0);
    key_id_of(key, id);
    assert_string_equal(id, fx->id_b);
    /* not a container: the writing key (the verification then says what is wrong) */
    f = fopen(path, "wb");
    fputs("garbage", f);
    fclose(f);
    assert_int_equal(backup_load_key_of_file(&fx->cfg, path, key, err, sizeof(err)), 0);
    key_id_of(key, id);
    assert_string_equal(id, fx->id_a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lookup_by_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_of_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
