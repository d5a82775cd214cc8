/*
 * Unit tests for `backup now` in the second the last backup took its name (daemon/cap/backup:
 * backups_cmd_now and backups__start_deferred, b->deferred). Backup names have one-second
 * resolution, so a second backup in the same second is deferred to the next tick in the next
 * second, never refused. The wall clock is injected (a wrapped clock_wall_ms), the job is a
 * stand-in (a wrapped backup_job_start that names it as the real one does, from the clock), the
 * control socket's replies are recorded (wrapped control_register and control_reply_*).
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
#include <uv.h>

#include "backupstream.h"
#include "cap/backup/backup_internal.h"
#include "core/control.h"
#include "err.h"

// WRAP: clock_wall_ms control_register control_reply_ok control_reply_error backup_job_start backup_job_name

static int64_t now_ms;
static CtlHandlerFn backup_now;
static void *backup_now_data;
static unsigned jobs_started, replies_ok, replies_error;
static char job_name[256], reply_name[256], error_text[512];
static int error_code;

int64_t __wrap_clock_wall_ms(void);
int64_t __wrap_clock_wall_ms(void)
{
    return now_ms;
}

int __wrap_control_register(Control *ctl, const CtlCommand *cmds, size_t n);
int __wrap_control_register(Control *ctl, const CtlCommand *cmds, size_t n)
{
    (void)ctl;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(cmds[i].name, "backup_now")) {
            backup_now = cmds[i].fn;
            backup_now_data = cmds[i].data;
        }
    return 0;
}

void __wrap_control_reply_ok(CtlCall *call, json_t *result);
void __wrap_control_reply_ok(CtlCall *call, json_t *result)
{
    (void)call;
    replies_ok++;
    snprintf(reply_name, sizeof(reply_name), "%s", json_string_value(json_object_get(result, "name")));
    json_decref(result);
}

void __wrap_control_reply_error(CtlCall *call, int code, const char *fmt, ...);
void __wrap_control_reply_error(CtlCall *call, int code, const char *fmt, ...)
{
    va_list ap;
    (void)call;
    replies_error++;
    error_code = code;
    va_start(ap, fmt);
    vsnprintf(error_text, sizeof(error_text), fmt, ap);
    va_end(ap);
}

/* The job takes its name from the second it starts, as backup_job_start does. */
BackupJob *__wrap_backup_job_start(uv_loop_t *loop, const ConfigBackup *cfg, BackupKind kind,
                                   const BackupToolVersion *tool_known, BackupJobDoneFn done, void *data);
BackupJob *__wrap_backup_job_start(uv_loop_t *loop, const ConfigBackup *cfg, BackupKind kind,
                                   const BackupToolVersion *tool_known, BackupJobDoneFn done, void *data)
{
    (void)loop, (void)kind, (void)tool_known, (void)done, (void)data;
    jobs_started++;
    assert_int_equal(backupstream_file_name(cfg->prefix, backups__now(), (CodecKind)cfg->codec, job_name,
                                            sizeof(job_name)), 0);
    return (BackupJob *)(uintptr_t)jobs_started;
}

const char *__wrap_backup_job_name(const BackupJob *job);
const char *__wrap_backup_job_name(const BackupJob *job)
{
    (void)job;
    return job_name;
}

/* What backups_job_done leaves behind for a backup that took its final name. */
static void job_took_its_name(Backups *b)
{
    b->job = NULL;
    b->job_kind = JOB_NONE;
    b->last_named_started = b->job_started;
}

static void closed(void *data)
{
    *(bool *)data = true;
}

static void test_backup_now_in_the_same_second_starts_in_the_next(void **state)
{
    (void)state;
    uv_loop_t loop;
    Core core = {.loop = &loop, .config_path = "/etc/drsupervisor.yaml"};
    int call1, call2;
    const int64_t t = 1764800000; /* a whole second */

    assert_int_equal(uv_loop_init(&loop), 0);
    Backups *b = backups_new(&core);
    assert_non_null(b);
    assert_non_null(backup_now);
    b->enabled = true;
    b->cfg.prefix = strdup("shop");
    assert_non_null(b->cfg.prefix);

    /* the first one starts at once, named after second t */
    now_ms = t * 1000 + 100;
    backup_now((CtlCall *)&call1, NULL, backup_now_data);
    assert_int_equal(jobs_started, 1);
    assert_int_equal(replies_ok, 1);
    char first[256];
    snprintf(first, sizeof(first), "%s", reply_name);
    job_took_its_name(b);

    /* the second, in the same second: neither started nor refused, deferred */
    now_ms = t * 1000 + 900;
    backup_now((CtlCall *)&call2, NULL, backup_now_data);
    if (replies_error)
        fail_msg("refused (%s): %s", err_name(error_code), error_text);
    assert_int_equal(jobs_started, 1);
    assert_int_equal(replies_ok + replies_error, 1);
    assert_non_null(b->deferred);
    /* a tick still in that second: still waiting */
    backups__start_deferred(b);
    assert_int_equal(jobs_started, 1);
    assert_non_null(b->deferred);

    /* the tick in the next second starts it, under a new name, and answers the operator */
    now_ms = (t + 1) * 1000 + 3;
    backups__start_deferred(b);
    assert_int_equal(jobs_started, 2);
    assert_null(b->deferred);
    assert_int_equal(replies_ok, 2);
    assert_string_not_equal(reply_name, first);
    assert_string_equal(reply_name, job_name);
    /* never -EAGAIN ("try again in a second"), nor any error, to the operator */
    assert_int_equal(replies_error, 0);

    b->job = NULL; /* the stand-in job has nothing to cancel */
    b->job_kind = JOB_NONE;
    bool done = false;
    backups_close(b, closed, &done);
    while (!done)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backup_now_in_the_same_second_starts_in_the_next),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
