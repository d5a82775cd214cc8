/*
 * control: the control socket server.
 *
 * Owns the listening Unix socket (bound from configuration, or passed by systemd), the client
 * connections, request framing and dispatch to a table of commands, role checks (SO_PEERCRED), and
 * the streaming of events to clients that asked to `watch`. Commands are registered by the modules
 * that own them; a handler replies at once or later (CtlCall stays valid until it is answered),
 * so a slow command never holds up other clients.
 */
#ifndef DRSUP_CONTROL_H
#define DRSUP_CONTROL_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "config/config.h"
#include "core/events.h"
#include "core/roles.h"

typedef struct Control Control;
typedef struct CtlCall CtlCall;

/* Handle a request. Must eventually call control_reply_ok or control_reply_error exactly once. */
typedef void (*CtlHandlerFn)(CtlCall *call, const json_t *args, void *data);

typedef struct CtlCommand {
    const char *name;
    bool mutating;      /* needs the operator role */
    CtlHandlerFn fn;
    void *data;
    const char *summary; /* one line for `help` */
} CtlCommand;

Control *control_new(uv_loop_t *loop, EventBus *events);
/* Listen: socket-activated fd if systemd passed one, else bind cfg->socket_path. Logs nothing. */
int control_listen(Control *ctl, const ConfigControl *cfg, char *err, size_t errlen);
/* Apply new limits and role policy (borrowed; must outlive the Control or the next call). */
void control_configure(Control *ctl, const ConfigControl *cfg, const RolePolicy *roles);
int control_register(Control *ctl, const CtlCommand *cmds, size_t n);
/* Told of every command that needs the operator role when it is answered (or refused): who, the
 * command, its arguments, 0 or the error code and message. The wiring points it at the audit log. */
typedef void (*CtlAuditFn)(const PeerCred *peer, const char *command, const json_t *args, int result,
                           const char *error, void *data);
void control_set_audit(Control *ctl, CtlAuditFn fn, void *data);
/* Close the listener and every client; pending calls are answered with "canceled". */
/* A gate before every mutating command (high availability: a follower refuses them). fn returns
 * false with a reason in why to refuse (DR_ENOTLEADER). */
typedef bool (*CtlGateFn)(const char *command, char *why, size_t whylen, void *data);
void control_set_gate(Control *ctl, CtlGateFn fn, void *data);
void control_close(Control *ctl, void (*closed_cb)(void *data), void *data);
unsigned control_client_count(const Control *ctl);
/* The socket path we listen on ("(systemd)" when passed a socket). */
const char *control_socket_path(const Control *ctl);

/* Reply. `result` is stolen (may be NULL for {}). */
void control_reply_ok(CtlCall *call, json_t *result);
void control_reply_error(CtlCall *call, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The caller's credentials and role. */
const PeerCred *control_call_peer(const CtlCall *call);
Role control_call_role(const CtlCall *call);
/* Turn this call's connection into an event stream: events are written as {"event":...} lines,
 * until the client hangs up or closes its sending side (EOF). */
int control_call_watch(CtlCall *call);

/*
 * Admission (pure, for tests): how many of max_clients slots only operators may take (a quarter,
 * at most 8), and whether a new client (counted in n_clients) is admitted: readers while
 * n_clients <= max_clients - operator_slots, operators while n_clients <= max_clients.
 */
unsigned control_operator_slots(unsigned max_clients);
bool control_admits(unsigned n_clients, unsigned max_clients, unsigned operator_slots, bool operator);

#endif
