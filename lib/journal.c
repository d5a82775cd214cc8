/*
 * journal: append-only checksummed record log with torn-tail recovery and ordered async appends
 * (see journal.h for the format and the contract).
 */
#include "journal.h"

#include "atomicfile.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

typedef struct JournalJob JournalJob;

struct JournalJob {
    JournalJob *next;
    uv_work_t work;
    Journal *journal;
    char *payload;
    size_t len;
    int status;
    uint64_t seq;
    JournalAppendCb cb;
    void *data;
};

struct Journal {
    int fd;
    char *path;
    uint64_t size;       /* end of the last good record */
    uint64_t next_seq;
    int broken;          /* sticky append error, 0 when usable */
    uv_mutex_t lock;     /* serialises journal_append */
    JournalRecord *records;
    size_t nrecords;
    char *buf;           /* the file content read at open; records point into it */
    /* async queue: head is running (when running), the rest wait in FIFO order */
    JournalJob *queue_head;
    JournalJob *queue_tail;
    size_t pending;
    uv_loop_t *loop;
};

static void journal_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void journal_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint32_t journal_get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t journal_get64(const unsigned char *p)
{
    return (uint64_t)journal_get32(p) | (uint64_t)journal_get32(p + 4) << 32;
}

static void journal_put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void journal_put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* crc32 over header bytes 0..7 and 12..19, then the payload. */
static uint32_t journal_crc(const unsigned char *hdr, const void *payload, size_t len)
{
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, hdr, 8);
    c = crc32(c, hdr + 12, 8);
    const unsigned char *p = payload;
    while (len > 0) {
        uInt n = len > 0x40000000u ? 0x40000000u : (uInt)len;
        c = crc32(c, p, n);
        p += n;
        len -= n;
    }
    return (uint32_t)c;
}

/*
 * Checks the record at off in buf[0..size). Returns true if valid, with its payload length in
 * *ret_len; else false with a reason. expect_seq == 0 accepts any seq > min_seq.
 */
static bool journal_check(const unsigned char *buf, uint64_t size, uint64_t off, uint64_t expect_seq,
                          uint64_t min_seq, size_t *ret_len, char *why, size_t whylen)
{
    uint64_t left = size - off;
    if (left < JOURNAL_HEADER_SIZE) {
        journal_errf(why, whylen, "partial header (%llu of %u bytes)", (unsigned long long)left,
                     JOURNAL_HEADER_SIZE);
        return false;
    }
    const unsigned char *h = buf + off;
    if (journal_get32(h) != JOURNAL_MAGIC) {
        journal_errf(why, whylen, "bad magic 0x%08x", journal_get32(h));
        return false;
    }
    uint32_t len = journal_get32(h + 4);
    if (len > JOURNAL_MAX_RECORD) {
        journal_errf(why, whylen, "length %u over the limit", len);
        return false;
    }
    if ((uint64_t)len > left - JOURNAL_HEADER_SIZE) {
        journal_errf(why, whylen, "record of %u bytes cut short at %llu bytes", len,
                     (unsigned long long)(left - JOURNAL_HEADER_SIZE));
        return false;
    }
    if (journal_crc(h, h + JOURNAL_HEADER_SIZE, len) != journal_get32(h + 8)) {
        journal_errf(why, whylen, "checksum mismatch");
        return false;
    }
    uint64_t seq = journal_get64(h + 12);
    if ((expect_seq && seq != expect_seq) || (!expect_seq && seq <= min_seq)) {
        journal_errf(why, whylen, "sequence %llu, expected %llu", (unsigned long long)seq,
                     (unsigned long long)(expect_seq ? expect_seq : min_seq + 1));
        return false;
    }
    *ret_len = len;
    return true;
}

static int journal_read_file(int fd, char **ret_buf, uint64_t *ret_size)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf)
        return -ENOMEM;
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(fd, buf + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int r = -errno;
            free(buf);
            return r;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    *ret_buf = buf;
    *ret_size = got;
    return 0;
}

/* Splits buf into records; returns 0 (with a possibly torn tail noted in info) or DR_ECORRUPT. */
static int journal_replay(Journal *j, uint64_t size, JournalOpenInfo *info, char *err, size_t errlen)
{
    const unsigned char *ub = (const unsigned char *)j->buf;
    uint64_t off = 0;
    uint64_t seq = 1;
    size_t cap = 0;
    while (off < size) {
        size_t len;
        char why[96];
        if (!journal_check(ub, size, off, seq, 0, &len, why, sizeof(why))) {
            /* Torn tail or corruption in the middle: is any valid record after it? */
            for (uint64_t p = off + 1; p + JOURNAL_HEADER_SIZE <= size; p++) {
                size_t l2;
                if (journal_get32(ub + p) == JOURNAL_MAGIC &&
                    journal_check(ub, size, p, 0, seq - 1, &l2, NULL, 0)) {
                    info->corrupt_offset = off;
                    journal_errf(err, errlen,
                                 "journal '%s': corrupt record at offset %llu (%s) followed by a "
                                 "valid record at offset %llu",
                                 j->path, (unsigned long long)off, why, (unsigned long long)p);
                    return DR_ECORRUPT;
                }
            }
            info->torn_offset = off;
            info->torn_bytes = size - off;
            snprintf(info->torn_reason, sizeof(info->torn_reason), "%s", why);
            break;
        }
        if (j->nrecords == cap) {
            cap = cap ? cap * 2 : 16;
            JournalRecord *r = realloc(j->records, cap * sizeof(*r));
            if (!r)
                return -ENOMEM;
            j->records = r;
        }
        JournalRecord *rec = &j->records[j->nrecords++];
        rec->seq = seq;
        rec->offset = off;
        rec->payload = j->buf + off + JOURNAL_HEADER_SIZE;
        rec->len = len;
        off += JOURNAL_HEADER_SIZE + len;
        seq++;
    }
    j->size = off;
    j->next_seq = seq;
    info->records = j->nrecords;
    /* NUL-terminate each payload for convenience: the byte after it is the next header's first
     * byte, already consumed, or the spare byte at the end of buf. */
    for (size_t i = 0; i < j->nrecords; i++)
        j->buf[j->records[i].offset + JOURNAL_HEADER_SIZE + j->records[i].len] = '\0';
    return 0;
}

static void journal_dirname(const char *path, char *dir, size_t dirlen)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, dirlen, ".");
    else if (slash == path)
        snprintf(dir, dirlen, "/");
    else
        snprintf(dir, dirlen, "%.*s", (int)(slash - path), path);
}

int journal_open(const char *path, Journal **ret_journal, JournalOpenInfo *info, char *err,
                 size_t errlen)
{
    JournalOpenInfo dummy;
    if (!info)
        info = &dummy;
    memset(info, 0, sizeof(*info));
    if (err && errlen)
        err[0] = '\0';

    Journal *j = calloc(1, sizeof(*j));
    if (!j || !(j->path = strdup(path))) {
        free(j);
        return -ENOMEM;
    }
    j->fd = -1;
    if (uv_mutex_init(&j->lock) != 0) {
        free(j->path);
        free(j);
        return -ENOMEM;
    }
    int r = 0;
    j->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (j->fd >= 0) {
        info->created = 1;
        char dir[4096];
        journal_dirname(path, dir, sizeof(dir));
        if (fsync(j->fd) < 0 || (r = atomicfile_fsync_dir(dir)) < 0) {
            r = r < 0 ? r : -errno;
            journal_errf(err, errlen, "journal '%s': cannot make its creation durable: %s", path,
                         err_str(r));
            goto fail;
        }
    } else if (errno == EEXIST) {
        j->fd = open(path, O_RDWR | O_CLOEXEC);
    }
    if (j->fd < 0) {
        r = -errno;
        journal_errf(err, errlen, "journal '%s': cannot open: %s", path, err_str(r));
        goto fail;
    }
    if (flock(j->fd, LOCK_EX | LOCK_NB) < 0) {
        r = errno == EWOULDBLOCK ? DR_EBUSY : -errno;
        journal_errf(err, errlen, "journal '%s': cannot lock: %s", path,
                     r == DR_EBUSY ? "in use by another journal" : err_str(r));
        goto fail;
    }
    uint64_t size = 0;
    if ((r = journal_read_file(j->fd, &j->buf, &size)) < 0) {
        journal_errf(err, errlen, "journal '%s': cannot read: %s", path, err_str(r));
        goto fail;
    }
    if ((r = journal_replay(j, size, info, err, errlen)) < 0) {
        if (r == -ENOMEM)
            journal_errf(err, errlen, "journal '%s': out of memory", path);
        goto fail;
    }
    if (info->torn_bytes > 0) {
        if (ftruncate(j->fd, (off_t)j->size) < 0 || fsync(j->fd) < 0) {
            r = -errno;
            journal_errf(err, errlen, "journal '%s': cannot truncate the torn tail at %llu: %s",
                         path, (unsigned long long)j->size, err_str(r));
            goto fail;
        }
    }
    *ret_journal = j;
    return 0;
fail:
    journal_free(j);
    return r;
}

void journal_free(Journal *j)
{
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    uv_mutex_destroy(&j->lock);
    free(j->records);
    free(j->buf);
    free(j->path);
    free(j);
}

size_t journal_record_count(const Journal *j)
{
    return j->nrecords;
}

const JournalRecord *journal_record_at(const Journal *j, size_t i)
{
    return i < j->nrecords ? &j->records[i] : NULL;
}

uint64_t journal_next_seq(const Journal *j)
{
    return j->next_seq;
}

uint64_t journal_size(const Journal *j)
{
    return j->size;
}

size_t journal_pending(const Journal *j)
{
    return j->pending;
}

static int journal_pwrite_all(int fd, const unsigned char *p, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int journal_append(Journal *j, const void *payload, size_t len, uint64_t *ret_seq)
{
    if (len > JOURNAL_MAX_RECORD)
        return -EFBIG;
    unsigned char *rec = malloc(JOURNAL_HEADER_SIZE + len);
    if (!rec)
        return -ENOMEM;
    uv_mutex_lock(&j->lock);
    int r = j->broken;
    if (r < 0)
        goto out;
    uint64_t seq = j->next_seq;
    journal_put32(rec, JOURNAL_MAGIC);
    journal_put32(rec + 4, (uint32_t)len);
    journal_put64(rec + 12, seq);
    if (len)
        memcpy(rec + JOURNAL_HEADER_SIZE, payload, len);
    journal_put32(rec + 8, journal_crc(rec, rec + JOURNAL_HEADER_SIZE, len));
    r = journal_pwrite_all(j->fd, rec, JOURNAL_HEADER_SIZE + len, j->size);
    if (r < 0) {
        /* Undo the partial record, or a later good record would make it look like corruption. */
        if (ftruncate(j->fd, (off_t)j->size) < 0)
            j->broken = r;
        goto out;
    }
    if (fsync(j->fd) < 0) {
        r = -errno;
        j->broken = r;
        goto out;
    }
    j->size += JOURNAL_HEADER_SIZE + len;
    j->next_seq++;
    if (ret_seq)
        *ret_seq = seq;
out:
    uv_mutex_unlock(&j->lock);
    free(rec);
    return r;
}

/* ---- asynchronous appends: one at a time on the thread pool, FIFO ---- */

static void journal_work(uv_work_t *w)
{
    JournalJob *job = w->data;
    job->status = journal_append(job->journal, job->payload, job->len, &job->seq);
}

static void journal_start_head(Journal *j);

static void journal_work_done(uv_work_t *w, int status)
{
    JournalJob *job = w->data;
    Journal *j = job->journal;
    if (status < 0) /* cannot happen: we never uv_cancel; be safe */
        job->status = status;
    j->queue_head = job->next;
    if (!j->queue_head)
        j->queue_tail = NULL;
    j->pending--;
    /* Start the next append before the callback so a callback that frees the journal is caught
     * by the pending count rather than by a dangling job. */
    journal_start_head(j);
    job->cb(j, job->status, job->status == 0 ? job->seq : 0, job->data);
    free(job->payload);
    free(job);
}

static void journal_start_head(Journal *j)
{
    JournalJob *job = j->queue_head;
    if (!job)
        return;
    /* uv_queue_work only fails when work_cb is NULL, which it never is here. */
    int r = uv_queue_work(j->loop, &job->work, journal_work, journal_work_done);
    (void)r;
}

int journal_append_async(uv_loop_t *loop, Journal *j, const void *payload, size_t len,
                         JournalAppendCb cb, void *data)
{
    if (len > JOURNAL_MAX_RECORD)
        return -EFBIG;
    if (j->loop && j->loop != loop)
        return -EINVAL;
    JournalJob *job = calloc(1, sizeof(*job));
    if (!job)
        return -ENOMEM;
    job->payload = malloc(len ? len : 1);
    if (!job->payload) {
        free(job);
        return -ENOMEM;
    }
    if (len)
        memcpy(job->payload, payload, len);
    job->len = len;
    job->journal = j;
    job->cb = cb;
    job->data = data;
    job->work.data = job;
    j->loop = loop;
    j->pending++;
    bool idle = j->queue_head == NULL;
    if (j->queue_tail)
        j->queue_tail->next = job;
    else
        j->queue_head = job;
    j->queue_tail = job;
    if (idle)
        journal_start_head(j);
    return 0;
}
