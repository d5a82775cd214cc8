/*
 * roles: who may do what on the control socket.
 *
 * Owns the role decision. A peer's credentials come from SO_PEERCRED (libuv 1.44 has no API for
 * it) plus, where /proc shows it, the peer's supplementary groups. Operators (mutating commands)
 * are root, the daemon's own user, members of the configured operators group (primary or
 * supplementary). Everyone else who can connect is a reader. Group membership is resolved when
 * the configuration is loaded (NSS lookups block, so never on the loop); a change in /etc/group
 * takes effect on reload.
 */
#ifndef DRSUP_ROLES_H
#define DRSUP_ROLES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef enum { ROLE_READER = 0, ROLE_OPERATOR = 1 } Role;

typedef struct RolePolicy {
    uid_t daemon_uid;
    bool has_group;
    gid_t operators_gid;
    char *group_name;
    uid_t *member_uids; /* users listed as members of the group */
    size_t n_members;
} RolePolicy;

#define PEER_MAX_GROUPS 64
typedef struct PeerCred {
    pid_t pid;
    uid_t uid;
    gid_t gid;
    gid_t groups[PEER_MAX_GROUPS]; /* supplementary groups from /proc/PID/status, if visible */
    size_t n_groups;
} PeerCred;

/* Resolve the operators group (NULL: none). Blocking NSS lookups. DR_ECONFIG with err if unknown. */
int roles_policy_build(const char *operators_group, RolePolicy *ret, char *err, size_t errlen);
void roles_policy_done(RolePolicy *p);

/* Credentials of the peer of a connected Unix socket. */
int roles_peer_cred(int fd, PeerCred *ret);

/* The peer's role; *ret_why says in words why (for logs and refusals). Pure. */
Role roles_decide(const RolePolicy *p, const PeerCred *peer, const char **ret_why);

#endif
