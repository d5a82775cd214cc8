/*
 * prio: the CPU (nice) and I/O (ioprio) priority of a process or of one thread.
 *
 * Owns lowering a child process's priority right after it is spawned, and lowering the calling
 * thread's priority for the length of one piece of work (a thread-pool worker compressing and
 * encrypting a backup chunk) and putting it back. On Linux both the nice value and the I/O
 * priority are per thread, so a pool thread running backup work does not slow the other work the
 * pool runs later. Putting a nice value back down needs CAP_SYS_NICE or RLIMIT_NICE (systemd's
 * LimitNICE=): without either, prio_thread_lower leaves the nice value alone (and says so), and
 * only the I/O priority, which anyone may raise back to best-effort, is lowered.
 *
 * Errors are negative errno values. No logging; no allocation.
 */
#ifndef DRSUP_PRIO_H
#define DRSUP_PRIO_H

#include <stdbool.h>
#include <sys/types.h>

typedef enum PrioIoClass {
    PRIO_IO_NORMAL = 0,  /* leave the I/O priority alone */
    PRIO_IO_BEST_EFFORT, /* best-effort class, lowest level (7) */
    PRIO_IO_IDLE,        /* idle class: only when nobody else needs the disk */
} PrioIoClass;

typedef struct PrioSpec {
    int nice;            /* 0 = leave alone; 1..19 */
    PrioIoClass io;
} PrioSpec;

/* Applies spec to the process (or thread) id: nice, then the I/O priority. 0 or the first -errno. */
int prio_apply(pid_t id, const PrioSpec *spec);

/* The calling thread's priority, to put back later. */
typedef struct PrioSaved {
    int nice;
    int ioprio;          /* raw ioprio_get value, -1 when unknown */
    bool nice_changed, io_changed;
} PrioSaved;

/*
 * Lowers the calling thread to spec, remembering what it was in *ret_saved. The nice value is
 * changed only when it can be put back (prio_can_restore_nice). Returns 0, or -errno when a part
 * could not be changed (what was changed is still recorded).
 */
int prio_thread_lower(const PrioSpec *spec, PrioSaved *ret_saved);
/* Puts the calling thread back as saved. 0 or -errno. */
int prio_thread_restore(const PrioSaved *saved);

/* Whether this process may bring a thread's nice value back down to `to` (root, CAP_SYS_NICE or
 * RLIMIT_NICE). */
bool prio_can_restore_nice(int to);

/* "idle", "best-effort", "normal". */
const char *prio_io_name(PrioIoClass io);

#endif
