/*
 * rejoin_steps: rejoin's steps after check_node, for another scenario that rebuilds a node as a
 * standby within its own run (network_partition, after its approval). Before the first of them the
 * run's context must hold "node" {name, conninfo, data_directory} (the node to rebuild, with a
 * data_directory on this host) and "source" {name, conninfo} (the primary it will follow); the
 * settings are the running configuration's scenarios.rejoin. They write "settings" and "copy" into
 * the run's context. Their contracts, timeouts and order are rejoin's (rejoin.c, its table):
 * check_settings → stop_node → checkpoint → rewind (on failure: base_backup) → configure →
 * create_slot → start_node → wait_streaming.
 */
#ifndef DRSUP_SCN_REJOIN_STEPS_H
#define DRSUP_SCN_REJOIN_STEPS_H

#include "fsm.h"

/* The row timeouts rejoin gives them: rewind and base_backup (scenarios.rejoin.copy_timeout is at
 * most 5h59m), wait_streaming (stream_timeout at most 30 min). */
#define REJOIN_STEPS_COPY_TIMEOUT_MS (6u * 3600u * 1000u)
#define REJOIN_STEPS_STREAM_TIMEOUT_MS (31u * 60u * 1000u)

void rejoin_step_check_settings(FsmCall *call, void *ctx, FsmDone done);
void rejoin_step_stop_node(FsmCall *call, void *ctx, FsmDone done);
void rejoin_step_checkpoint(FsmCall *call, void *ctx, FsmDone done);
void rejoin_step_rewind(FsmCall *call, void *ctx, FsmDone done);
void rejoin_step_base_backup(FsmCall *call, void *ctx, FsmDone done);
void rejoin_step_configure(FsmCall *call, void *ctx, FsmDone done);
void rejoin_step_create_slot(FsmCall *call, void *ctx, FsmDone done);
void rejoin_step_start_node(FsmCall *call, void *ctx, FsmDone done);
void rejoin_step_wait_streaming(FsmCall *call, void *ctx, FsmDone done);

#endif
