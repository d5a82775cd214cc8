/*
 * outbox: durable alert files (see outbox.h). Blocking; thread pool only.
 */
#include "alerts/outbox.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"

void outbox_path(const char *dir, uint64_t seq, AlertChannel ch, char *out, size_t n)
{
    snprintf(out, n, "%s/%016llu-%s.json", dir, (unsigned long long)seq, alertfmt_channel_name(ch));
}

int outbox_prepare(const char *dir)
{
    char dead[4096];

    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    snprintf(dead, sizeof(dead), "%s/dead", dir);
    if (mkdir(dead, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int outbox_write(const char *dir, uint64_t seq, AlertChannel ch, const char *json_text)
{
    char path[4096];
    outbox_path(dir, seq, ch, path, sizeof(path));
    return atomicfile_write(path, json_text, strlen(json_text), 0600);
}

int outbox_remove(const char *dir, uint64_t seq, AlertChannel ch)
{
    char path[4096];
    outbox_path(dir, seq, ch, path, sizeof(path));
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return atomicfile_fsync_dir(dir);
}

int outbox_bury(const char *dir, uint64_t seq, AlertChannel ch)
{
    char from[4096], deaddir[4096], to[4200];
    int r;

    outbox_path(dir, seq, ch, from, sizeof(from));
    snprintf(deaddir, sizeof(deaddir), "%s/dead", dir);
    outbox_path(deaddir, seq, ch, to, sizeof(to));
    if (rename(from, to) < 0)
        return -errno;
    r = atomicfile_fsync_dir(deaddir);
    return r < 0 ? r : atomicfile_fsync_dir(dir);
}

static int outbox_cmp_seq(const void *a, const void *b)
{
    const AlertMsg *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Parse "<digits>-<channel>.json"; 0 or -EINVAL. */
static int outbox_parse_name(const char *name, uint64_t *ret_seq, AlertChannel *ret_ch)
{
    char *end = NULL;
    char chname[32];
    unsigned long long seq = strtoull(name, &end, 10);
    size_t len;

    if (!end || end == name || *end != '-' || seq == 0)
        return -EINVAL;
    len = strlen(end + 1);
    if (len < 6 || len - 5 >= sizeof(chname) || strcmp(end + 1 + len - 5, ".json"))
        return -EINVAL;
    memcpy(chname, end + 1, len - 5);
    chname[len - 5] = '\0';
    if (alertfmt_channel_parse(chname, ret_ch) < 0)
        return -EINVAL;
    *ret_seq = (uint64_t)seq;
    return 0;
}

static int outbox_push(AlertMsg **arr, size_t *n, size_t *cap, const AlertMsg *m)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        AlertMsg *na = realloc(*arr, nc * sizeof(*na));
        if (!na)
            return -ENOMEM;
        *arr = na;
        *cap = nc;
    }
    (*arr)[(*n)++] = *m;
    return 0;
}

static int outbox_scan(const char *dir, bool is_dead, OutboxLoad *l, AlertMsg **arr, size_t *n)
{
    DIR *dh = opendir(dir);
    struct dirent *de;
    size_t cap = 0;
    char path[4096];

    if (!dh)
        return errno == ENOENT ? 0 : -errno;
    while ((de = readdir(dh))) {
        uint64_t seq;
        AlertChannel ch;
        char *data = NULL;
        size_t len = 0;
        AlertMsg m;

        if (de->d_name[0] == '.') {
            if (strstr(de->d_name, ".tmp.")) {
                snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                if (unlink(path) == 0)
                    l->n_temps++;
            }
            continue;
        }
        if (outbox_parse_name(de->d_name, &seq, &ch) < 0)
            continue;
        if (seq > l->max_seq)
            l->max_seq = seq;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        json_t *j = NULL;
        if (atomicfile_read_all(path, 1024 * 1024, &data, &len) == 0)
            j = json_loadb(data, len, 0, NULL);
        free(data);
        int pr = j ? alertfmt_msg_from_json(j, &m) : -EINVAL;
        if (pr < 0 || m.seq != seq || m.channel != ch) {
            if (pr == 0)
                alertfmt_msg_free_fields(&m);
            json_decref(j);
            l->n_bad++;
            if (!is_dead) {
                char to[4200];
                snprintf(to, sizeof(to), "%s/dead/%s.bad", dir, de->d_name);
                if (rename(path, to) < 0)
                    unlink(path);
            }
            continue;
        }
        json_decref(j);
        if (outbox_push(arr, n, &cap, &m) < 0) {
            alertfmt_msg_free_fields(&m);
            closedir(dh);
            return -ENOMEM;
        }
    }
    closedir(dh);
    if (*n > 1)
        qsort(*arr, *n, sizeof(**arr), outbox_cmp_seq);
    return 0;
}

int outbox_load(const char *dir, size_t max_dead, OutboxLoad *ret)
{
    char dead[4096];
    int r;

    memset(ret, 0, sizeof(*ret));
    r = outbox_prepare(dir);
    if (r == 0)
        r = outbox_scan(dir, false, ret, &ret->msgs, &ret->n_msgs);
    snprintf(dead, sizeof(dead), "%s/dead", dir);
    if (r == 0)
        r = outbox_scan(dead, true, ret, &ret->dead, &ret->n_dead);
    if (r == 0 && ret->n_temps)
        atomicfile_fsync_dir(dir);
    if (r == 0 && ret->n_dead > max_dead) {
        size_t drop = ret->n_dead - max_dead;
        for (size_t i = 0; i < drop; i++)
            alertfmt_msg_free_fields(&ret->dead[i]);
        memmove(ret->dead, ret->dead + drop, max_dead * sizeof(*ret->dead));
        ret->n_dead = max_dead;
    }
    if (r < 0)
        outbox_load_done(ret);
    return r;
}

void outbox_load_done(OutboxLoad *l)
{
    for (size_t i = 0; i < l->n_msgs; i++)
        alertfmt_msg_free_fields(&l->msgs[i]);
    for (size_t i = 0; i < l->n_dead; i++)
        alertfmt_msg_free_fields(&l->dead[i]);
    free(l->msgs);
    free(l->dead);
    memset(l, 0, sizeof(*l));
}
