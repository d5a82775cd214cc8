/*
 * drctl high-availability commands: leader (who leads, since when, the lease, the revision) and
 * step-down (the leader's planned hand-over).
 *
 * Owns their table entries and the rendering of the daemon's leader reply (also the "ha" line of
 * drctl status, through drctl_print_ha).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "drctl.h"

void drctl_print_ha(const json_t *r)
{
    char since[64];
    if (!json_is_true(json_object_get(r, "enabled"))) {
        printf("ha       off (no 'ha' section): this daemon acts alone\n");
        return;
    }
    printf("ha       node %s: %s%s; leader %s (revision %" PRId64 ")\n", drctl_str(r, "node", "?"),
           drctl_str(r, "role", "?"), json_is_true(json_object_get(r, "acting")) ? ", acting" : ", not acting",
           drctl_str(r, "leader", "none"), drctl_int(r, "revision"));
    if (json_object_get(r, "since_ms")) {
        drctl_ago(drctl_int(r, "since_ms"), since, sizeof(since));
        printf("         leader since %s, token %" PRId64 ", lease %s (TTL %" PRId64 " s, %" PRId64 " ms left)\n", since,
               drctl_int(r, "token"), drctl_str(r, "lease_id", "?"), drctl_int(r, "ttl_s"),
               drctl_int(r, "lease_remaining_ms"));
    }
    if (json_object_get(r, "hold_remaining_ms"))
        printf("         stepped down: no campaign for %" PRId64 " ms more\n", drctl_int(r, "hold_remaining_ms"));
    printf("         etcd %s, key %s%s%s\n", drctl_str(r, "endpoint", "?"), drctl_str(r, "key", "?"),
           drctl_str(r, "last_error", "")[0] ? "; last error: " : "", drctl_str(r, "last_error", ""));
}

static void drctl_print_step_down(const json_t *r)
{
    printf("%s\n", drctl_str(r, "message", "stepped down"));
}

const OptCommand drctl_cmd_leader = {
    .name = "leader",
    .summary = "high availability: who leads, since when, the lease, the revision",
    .description = "With an 'ha' section several daemons supervise the same platform and one of them, the leader "
                   "elected in etcd, acts. Shows this daemon's node name and role (leader, follower, "
                   "stepped_down), whether it acts, the leader's node and the revision of its key (the fencing "
                   "token every venue action carries), and on the leader since when it leads, its lease and how "
                   "long that stays valid on its own clock. Answered by followers too.",
    .data = &(const DrctlAction){.wire = "leader", .print = drctl_print_ha},
};

const OptCommand drctl_cmd_step_down = {
    .name = "step-down",
    .summary = "high availability: the leader hands over (planned) and holds off",
    .description = "The leader stops acting at once, revokes its lease (which deletes the leader key, so a "
                   "follower takes over at its next poll) and does not campaign again for ha.step_down_hold; "
                   "then it restarts to rejoin as a follower. Refused on a follower with \"not the leader "
                   "(leader: NODE)\". Needs the operator role.",
    .data = &(const DrctlAction){.wire = "step_down", .print = drctl_print_step_down},
};
