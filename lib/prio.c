/*
 * prio: nice and ioprio of a process or thread (see prio.h).
 */
#include "prio.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PRIO_IOPRIO_WHO_PROCESS 1
#define PRIO_IOPRIO_CLASS_SHIFT 13
#define PRIO_IOPRIO_CLASS_BE 2
#define PRIO_IOPRIO_CLASS_IDLE 3

static int prio_ioprio_value(PrioIoClass io)
{
    switch (io) {
    case PRIO_IO_BEST_EFFORT:
        return PRIO_IOPRIO_CLASS_BE << PRIO_IOPRIO_CLASS_SHIFT | 7;
    case PRIO_IO_IDLE:
        return PRIO_IOPRIO_CLASS_IDLE << PRIO_IOPRIO_CLASS_SHIFT;
    case PRIO_IO_NORMAL:
    default:
        return -1;
    }
}

static int prio_ioprio_set(pid_t id, int value)
{
    return syscall(SYS_ioprio_set, PRIO_IOPRIO_WHO_PROCESS, (int)id, value) < 0 ? -errno : 0;
}

int prio_apply(pid_t id, const PrioSpec *spec)
{
    int r = 0;
    if (!spec)
        return 0;
    if (spec->nice > 0) {
        errno = 0;
        int cur = getpriority(PRIO_PROCESS, (id_t)id);
        if (!(cur == -1 && errno) && cur < spec->nice && setpriority(PRIO_PROCESS, (id_t)id, spec->nice) < 0)
            r = -errno;
    }
    int io = prio_ioprio_value(spec->io);
    if (io >= 0) {
        int e = prio_ioprio_set(id, io);
        if (e < 0 && r == 0)
            r = e;
    }
    return r;
}

bool prio_can_restore_nice(int to)
{
    struct rlimit rl;
    if (geteuid() == 0)
        return true;
    if (getrlimit(RLIMIT_NICE, &rl) < 0)
        return false;
    /* RLIMIT_NICE r lets the nice value go down to 20 - r */
    return rl.rlim_cur == RLIM_INFINITY || 20 - (long)rl.rlim_cur <= (long)to;
}

int prio_thread_lower(const PrioSpec *spec, PrioSaved *ret_saved)
{
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int r = 0;

    ret_saved->nice_changed = ret_saved->io_changed = false;
    errno = 0;
    ret_saved->nice = getpriority(PRIO_PROCESS, (id_t)tid);
    if (ret_saved->nice == -1 && errno)
        return -errno;
    long io = syscall(SYS_ioprio_get, PRIO_IOPRIO_WHO_PROCESS, (int)tid);
    ret_saved->ioprio = io < 0 ? -1 : (int)io;
    if (!spec)
        return 0;
    if (spec->nice > ret_saved->nice) {
        if (!prio_can_restore_nice(ret_saved->nice))
            r = -EPERM;
        else if (setpriority(PRIO_PROCESS, (id_t)tid, spec->nice) < 0)
            r = -errno;
        else
            ret_saved->nice_changed = true;
    }
    int want = prio_ioprio_value(spec->io);
    if (want >= 0 && ret_saved->ioprio >= 0) {
        int e = prio_ioprio_set(tid, want);
        if (e == 0)
            ret_saved->io_changed = true;
        else if (r == 0)
            r = e;
    }
    return r;
}

int prio_thread_restore(const PrioSaved *saved)
{
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int r = 0;
    if (saved->nice_changed && setpriority(PRIO_PROCESS, (id_t)tid, saved->nice) < 0)
        r = -errno;
    if (saved->io_changed) {
        int e = prio_ioprio_set(tid, saved->ioprio);
        if (e < 0 && r == 0)
            r = e;
    }
    return r;
}

const char *prio_io_name(PrioIoClass io)
{
    switch (io) {
    case PRIO_IO_BEST_EFFORT:
        return "best-effort";
    case PRIO_IO_IDLE:
        return "idle";
    case PRIO_IO_NORMAL:
    default:
        return "normal";
    }
}
