/*
 * main: drsupervisord's entry point.
 *
 * Owns the command line (--config, --check-config, --foreground, --help, --version), the first
 * configuration load (errors printed as FILE:LINE:COL and exit 2), the loop's life: start the
 * daemon, run until stopped, close every handle and check that uv_loop_close() succeeds; and the
 * malloc settings that keep the footprint small after a backup (main_tune_malloc).
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "child.h"
#include "core/daemon.h"
#include "err.h"
#include "log.h"
#include "cap/wal/wal.h"
#include "scenario/scenario.h"

#define MAIN_DEFAULT_CONFIG "/etc/drsupervisor/drsupervisor.yaml"

static void main_usage(FILE *out)
{
    fprintf(out,
            "Usage: drsupervisord [--config FILE] [--foreground] [--check-config | --release-sync]\n"
            "\n"
            "Disaster-recovery supervisor for PostgreSQL trading platforms: probes the database\n"
            "and the platform, takes and verifies backups, runs recovery scenarios, and answers\n"
            "drctl on its control socket.\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE    configuration file (default " MAIN_DEFAULT_CONFIG ")\n"
            "  -t, --check-config   validate the configuration, print the result, and exit\n"
            "      --release-sync   if the primary's synchronous_standby_names is the WAL archive's,\n"
            "                       reset it so commits stop waiting for it, and exit (the unit's\n"
            "                       ExecStopPost: a daemon that died cannot fall back itself)\n"
            "  -f, --foreground     log readable lines to stderr even under systemd\n"
            "                       (the daemon never forks; systemd runs it as Type=notify)\n"
            "  -h, --help           show this help\n"
            "  -V, --version        show the version\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop cleanly, SIGHUP reloads the configuration.\n"
            "Exit status: 0 clean stop, 1 runtime failure, 2 bad usage or configuration.\n"
            "See drsupervisord(8), drsupervisor.yaml(5) and drctl(1).\n");
}

/*
 * Large buffers (a backup's 4 MiB stream buffers, codec windows, a verification's chunks) come
 * from mmap and go back to the kernel when freed. glibc raises its mmap threshold each time it
 * frees an mmapped block (up to 32 MiB), after which such buffers are carved from the worker
 * threads' arenas and stay resident: measured, RSS went from 13.4 MB idle to 28 MB after three
 * backups with verification; with a fixed threshold it returns to within 1.6 MB of idle (most of
 * it library code pages first touched by the backup). A fixed threshold also fixes the trim
 * threshold, so freed memory at the top of a heap is returned too. Set before any thread exists.
 */
static void main_tune_malloc(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return; /* ASan's allocator has no mmap threshold (and says so); the plain build sets it */
#endif
    if (mallopt(M_MMAP_THRESHOLD, 128 * 1024) != 1)
        fprintf(stderr, "drsupervisord: warning: cannot set malloc's mmap threshold; memory after a backup may stay high\n");
    /* One arena besides the main one: the thread-pool workers (compression, encryption, the audit
     * writer) otherwise each keep their own, whose freed pages stay resident. */
    if (mallopt(M_ARENA_MAX, 2) != 1)
        fprintf(stderr, "drsupervisord: warning: cannot limit malloc's arenas; memory after a backup may stay high\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 't'},
        {"foreground", no_argument, NULL, 'f'},   {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {"release-sync", no_argument, NULL, 'R'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = MAIN_DEFAULT_CONFIG;
    bool check_only = false, foreground = false, release_sync = false;

    /* A child on its way to its program (lib/child's exec shim): never returns. */
    if (child_exec_shim_main(argc, argv))
        return 127;
    main_tune_malloc();
    Config *cfg = NULL;
    char *errors = NULL;
    RolePolicy roles;
    char err[512] = "";
    uv_loop_t loop;
    Daemon d;
    int c, r;

    while ((c = getopt_long(argc, argv, "c:tfhV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 't':
            check_only = true;
            break;
        case 'R':
            release_sync = true;
            break;
        case 'f':
            foreground = true;
            break;
        case 'h':
            main_usage(stdout);
            return 0;
        case 'V':
            printf("drsupervisord %s\n", DRSUP_VERSION);
            return 0;
        default:
            main_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "drsupervisord: unexpected argument '%s'\n", argv[optind]);
        main_usage(stderr);
        return 2;
    }
    if (foreground)
        unsetenv("JOURNAL_STREAM");
    log_init(LOG_INFO, false);

    /* Each scenario's section (scenarios.<name>) is read by the scenario's own reader. */
    r = scenario_register_config();
    if (r < 0) {
        fprintf(stderr, "drsupervisord: the scenario registry is invalid: %s\n", err_str(r));
        return 1;
    }
    r = config_load(config_path, &cfg, &errors);
    if (r == 0) {
        r = roles_policy_build(cfg->control.operators_group, &roles, err, sizeof(err));
        if (r < 0) {
            if (asprintf(&errors, "%s: %s", config_path, err) < 0)
                errors = NULL;
            cfg = config_free(cfg);
        }
    }
    if (r < 0) {
        fprintf(stderr, "%s\n", errors ? errors : err_str(r));
        if (!check_only)
            fprintf(stderr, "drsupervisord: not starting: the configuration is invalid\n");
        free(errors);
        return 2;
    }
    if (release_sync) {
        /* One-shot and blocking by design (no loop runs): systemd's ExecStopPost. */
        char msg[600];
        r = wal_release_sync(&cfg->wal, msg, sizeof(msg));
        fprintf(r < 0 ? stderr : stdout, "drsupervisord --release-sync: %s\n", msg);
        roles_policy_done(&roles);
        config_free(cfg);
        return r < 0 ? 1 : 0;
    }
    if (check_only) {
        /* What start-up and a reload would refuse, not only what parses. */
        char *refused = NULL;
        r = daemon_check_config(NULL, cfg, &refused);
        if (r < 0)
            fprintf(stderr, "%s: the configuration parses, but it would be refused:\n%s\n", config_path,
                    refused ? refused : err_str(r));
        if (r == 0)
            printf("%s: configuration ok\n", config_path);
        free(refused);
        roles_policy_done(&roles);
        config_free(cfg);
        return r < 0 ? 2 : 0;
    }
    log_set_max_priority(cfg->log_level);

    r = httpc_global_init();
    if (r < 0) {
        log_error("main", "cannot initialise libcurl: %s", err_str(r));
        roles_policy_done(&roles);
        config_free(cfg);
        return 1;
    }
    uv_loop_init(&loop);
    /* Children (pg_dump, pg_restore, hooks) die with the daemon: spawned through our own binary,
     * which sets PR_SET_PDEATHSIG before it execs them (lib/child.h). */
    child_use_exec_shim("/proc/self/exe");
    r = daemon_init(&d, &loop, config_path, cfg, &roles); /* logs its own errors, like daemon_start */
    if (r == 0)
        r = daemon_start(&d);
    if (r < 0)
        daemon_stop(&d, 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    int exit_code = d.exit_code;
    daemon_done(&d);
    r = uv_loop_close(&loop);
    if (r < 0) {
        log_error("main", "event loop did not close cleanly: %s", uv_strerror(r));
        exit_code = 1;
    }
    httpc_global_cleanup();
    log_notice("main", "stopped");
    return exit_code;
}
