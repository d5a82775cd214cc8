/*
 * roles: peer credentials and the operator decision (see roles.h).
 */
#include "core/roles.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"

int roles_policy_build(const char *operators_group, RolePolicy *ret, char *err, size_t errlen)
{
    RolePolicy p = {.daemon_uid = geteuid()};

    if (operators_group && operators_group[0]) {
        struct group *gr = getgrnam(operators_group);
        if (!gr) {
            snprintf(err, errlen, "operators group '%s' does not exist", operators_group);
            return DR_ECONFIG;
        }
        p.has_group = true;
        p.operators_gid = gr->gr_gid;
        p.group_name = strdup(operators_group);
        size_t n = 0;
        while (gr->gr_mem && gr->gr_mem[n])
            n++;
        /* Copy names first: getpwnam may reuse getgrnam's static storage. */
        char **names = calloc(n + 1, sizeof(*names));
        p.member_uids = calloc(n + 1, sizeof(*p.member_uids));
        if (!names || !p.member_uids || !p.group_name) {
            free(names);
            roles_policy_done(&p);
            return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
            names[i] = strdup(gr->gr_mem[i]);
        for (size_t i = 0; i < n; i++) {
            struct passwd *pw = names[i] ? getpwnam(names[i]) : NULL;
            if (pw)
                p.member_uids[p.n_members++] = pw->pw_uid;
            free(names[i]);
        }
        free(names);
    }
    *ret = p;
    return 0;
}

void roles_policy_done(RolePolicy *p)
{
    free(p->member_uids);
    free(p->group_name);
    memset(p, 0, sizeof(*p));
}

int roles_peer_cred(int fd, PeerCred *ret)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    char path[64], line[1024];
    FILE *f;

    memset(ret, 0, sizeof(*ret));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
        return -errno;
    ret->pid = cr.pid;
    ret->uid = cr.uid;
    ret->gid = cr.gid;
    /* Supplementary groups of the peer process, best effort (hidden under ProtectProc=invisible). */
    snprintf(path, sizeof(path), "/proc/%d/status", (int)cr.pid);
    f = fopen(path, "re");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "Groups:", 7) == 0) {
            char *p = line + 7, *end;
            while (ret->n_groups < PEER_MAX_GROUPS) {
                unsigned long g = strtoul(p, &end, 10);
                if (end == p)
                    break;
                ret->groups[ret->n_groups++] = (gid_t)g;
                p = end;
            }
            break;
        }
    }
    fclose(f);
    return 0;
}

Role roles_decide(const RolePolicy *p, const PeerCred *peer, const char **ret_why)
{
    const char *why;
    Role role = ROLE_READER;

    if (peer->uid == 0) {
        role = ROLE_OPERATOR;
        why = "caller is root";
    } else if (peer->uid == p->daemon_uid) {
        role = ROLE_OPERATOR;
        why = "caller runs as the daemon's user";
    } else if (!p->has_group) {
        why = "caller is not root and no operators group is configured";
    } else {
        why = "caller is not root and not in the operators group";
        if (peer->gid == p->operators_gid) {
            role = ROLE_OPERATOR;
            why = "caller's primary group is the operators group";
        }
        for (size_t i = 0; role == ROLE_READER && i < peer->n_groups; i++) {
            if (peer->groups[i] == p->operators_gid) {
                role = ROLE_OPERATOR;
                why = "caller is in the operators group";
            }
        }
        for (size_t i = 0; role == ROLE_READER && i < p->n_members; i++) {
            if (p->member_uids[i] == peer->uid) {
                role = ROLE_OPERATOR;
                why = "caller is listed in the operators group";
            }
        }
    }
    if (ret_why)
        *ret_why = why;
    return role;
}
